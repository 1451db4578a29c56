# segserver server image. Redis is not inside: point SEGSERVER_REDIS_URL at one
# (see compose.yaml). Build: docker build -t segserver .

# --- the browser SDK's build (served at /sdk/) ---
FROM node:20-slim AS sdk
WORKDIR /sdk
COPY sdk_js/package.json sdk_js/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY sdk_js/ ./
RUN npm run build

# --- the wheel ---
FROM python:3.11-slim AS wheel
WORKDIR /src
RUN pip install --no-cache-dir build hatchling
COPY pyproject.toml README.md hatch_build.py ./
COPY segserver/ segserver/
COPY lua/ lua/
COPY config/ config/
COPY --from=sdk /sdk/dist/ sdk_js/dist/
RUN python -m build --wheel --no-isolation --outdir /dist

# --- the server ---
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 segserver
COPY --from=wheel /dist/*.whl /tmp/
RUN pip install --no-cache-dir /tmp/*.whl && rm /tmp/*.whl
USER segserver
WORKDIR /home/segserver
ENV SEGSERVER_HOST=0.0.0.0 \
    SEGSERVER_PORT=8080 \
    SEGSERVER_DATA_DIR=/home/segserver/data \
    SEGSERVER_REDIS_URL=redis://redis:6379/0
# Compile the rule kernels now, into the shared kernel cache (~/.cache/segserver), so the
# first request never waits for Numba.
RUN segserver warm
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/readyz').status != 200)"
CMD ["segserver", "serve"]

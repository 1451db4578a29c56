"""Load tests: locust scenarios (locustfile.py) and the runner (`python -m loadtests.run`)."""

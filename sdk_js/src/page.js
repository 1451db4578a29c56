// What a page view says about the page. Strings are cut to 256 characters, the
// server's default max_string_length (a longer one would get the event rejected).

const cut = (s) => (s ? String(s).slice(0, 256) : undefined);

/** "mobile", "tablet" or "desktop" from a user agent string. */
export const device = (ua) =>
  /iPad|Tablet|Android(?!.*Mobile)/i.test(ua) ? "tablet" : /Mobi|iPhone|Android/i.test(ua) ? "mobile" : "desktop";

/** The properties of a page_view: url, referrer, title, UTM parameters, device, language. */
export function pageProps(location, document, navigator) {
  const q = new URLSearchParams(location.search || "");
  const p = {
    url: cut(location.href),
    referrer: cut(document.referrer),
    title: cut(document.title),
    device: device(navigator.userAgent || ""),
    language: cut(navigator.language),
  };
  for (const k of ["source", "medium", "campaign"]) p["utm_" + k] = cut(q.get("utm_" + k));
  return p;
}

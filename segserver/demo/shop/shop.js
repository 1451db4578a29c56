// The demo shop: a product catalogue, a cart in localStorage (the shop's own, not
// the SDK's), and the segserver SDK wired to the demo site's placements.
// window.segserverDemo ({siteKey, endpoint}) comes from /demo/config.js.
(function () {
  "use strict";
  var CATEGORIES = ["shoes", "shirts", "bags", "watches", "jackets", "hats"];
  var NOUN = { shoes: "sneakers", shirts: "shirt", bags: "tote", watches: "watch", jackets: "jacket", hats: "cap" };
  var ADJ = ["Classic", "Urban", "Alpine", "Coastal", "Vintage", "Studio", "Nordic", "Summit"];
  // p0..p47: the same ids and categories as the seeded demo visitors (segserver/demo.py).
  var PRODUCTS = [];
  for (var i = 0; i < 48; i++) {
    var cat = CATEGORIES[i % 6];
    PRODUCTS.push({
      id: "p" + i,
      name: ADJ[Math.floor(i / 6)] + " " + NOUN[cat],
      category: cat,
      price: Math.round((19 + ((i * 37) % 280)) * 100) / 100 - 0.01,
    });
  }
  var byId = {};
  PRODUCTS.forEach(function (p) { byId[p.id] = p; });

  var params = new URLSearchParams(location.search);
  var consentRequired = params.get("consent") === "required";
  var config = window.segserverDemo || {};

  // --- time to the filled slot, from navigation start (Performance API) -------------
  // A mark per placement when its slot is first revealed: "segserver:<id>:<state>".
  var marked = {};
  new MutationObserver(function (records) {
    records.forEach(function (r) {
      var el = r.target;
      var id = el.getAttribute("data-segserver-placement");
      var state = el.getAttribute("data-segserver-state");
      if (id && state && !marked[id]) {
        marked[id] = true;
        performance.mark("segserver:" + id + ":" + state);
      }
    });
  }).observe(document.documentElement, { subtree: true, attributes: true, attributeFilter: ["data-segserver-state"] });

  // --- cart ---------------------------------------------------------------------------
  function cart() {
    try { return JSON.parse(localStorage.getItem("demo_cart")) || []; } catch (_) { return []; }
  }
  function saveCart(items) { localStorage.setItem("demo_cart", JSON.stringify(items)); showCount(); }
  function total(items) {
    return Math.round(items.reduce(function (s, x) { return s + byId[x.id].price * x.qty; }, 0) * 100) / 100;
  }
  function showCount() {
    var n = cart().reduce(function (s, x) { return s + x.qty; }, 0);
    var el = document.getElementById("cart-count");
    if (el) el.textContent = String(n);
  }

  // --- rendering ----------------------------------------------------------------------
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text != null) e.textContent = text;
    return e;
  }
  function money(v) { return v.toFixed(2) + " €"; }
  function card(p) {
    var a = el("a", { href: "/demo/product.html?id=" + p.id, class: "card", "data-product-id": p.id });
    a.appendChild(el("div", { class: "swatch swatch-" + p.category }, p.category));
    a.appendChild(el("strong", {}, p.name));
    a.appendChild(el("span", { class: "price" }, money(p.price)));
    return a;
  }
  function grid(products) {
    var g = el("div", { class: "grid" });
    products.forEach(function (p) { g.appendChild(card(p)); });
    return g;
  }

  // Recommendations: the SDK's `render` hook draws them from `content.products` (ids
  // from visitors' events: looked up in the catalogue, unknown ids skipped). With no
  // data yet (a fresh shop), a few featured products stand in.
  function render(slot, decision) {
    var c = decision.content || {};
    // Which campaign filled the slot (none: the placement's default content), for the CSS.
    slot.setAttribute("data-campaign", decision.campaign || "default");
    if (c.kind !== "recommendations") return false;
    var ids = (c.products || (c.payload && c.payload.products) || []).filter(function (id) { return byId[id]; });
    var products = ids.map(function (id) { return byId[id]; });
    if (!products.length) products = PRODUCTS.slice(0, 4);
    var box = el("div", { class: "recommendations", "data-strategy": (c.payload && c.payload.strategy) || "" });
    box.appendChild(el("h2", {}, (c.payload && c.payload.title) || "Recommended for you"));
    box.appendChild(grid(products.slice(0, (c.payload && c.payload.limit) || 4)));
    slot.replaceChildren(box);
    return true;
  }

  // --- the SDK --------------------------------------------------------------------------
  window.demoShop = {
    products: PRODUCTS,
    init: function (placements) {
      if (!window.segserver || !config.siteKey) {
        console.warn("demo shop: no SDK or no demo site key (start the server with --demo)");
        return;
      }
      performance.mark("demo:init");
      segserver.init({
        endpoint: config.endpoint || location.origin,
        siteKey: config.siteKey,
        placements: placements,
        consent: consentRequired ? "required" : "granted",
        render: render,
      });
    },
  };

  function page() {
    showCount();
    var main = document.querySelector("main");
    var kind = document.body.getAttribute("data-page");
    if (kind === "home") document.getElementById("products").appendChild(grid(PRODUCTS));
    if (kind === "product") {
      var p = byId[params.get("id")] || PRODUCTS[0];
      document.title = p.name + " · Demo shop";
      document.getElementById("name").textContent = p.name;
      document.getElementById("price").textContent = money(p.price);
      document.getElementById("category").textContent = p.category;
      document.getElementById("swatch").className = "swatch big swatch-" + p.category;
      window.segserver && segserver.track("product_view", { product_id: p.id, category: p.category, price: p.price });
      document.getElementById("add").addEventListener("click", function () {
        var items = cart();
        var line = items.filter(function (x) { return x.id === p.id; })[0];
        if (line) line.qty += 1;
        else items.push({ id: p.id, qty: 1 });
        saveCart(items);
        window.segserver && segserver.track("add_to_cart", { product_id: p.id, price: p.price, quantity: 1 });
        document.getElementById("added").textContent = p.name + " is in your cart.";
      });
    }
    if (kind === "cart" || kind === "checkout") {
      var items = cart();
      var list = document.getElementById("lines");
      items.forEach(function (x) {
        var li = el("li", { "data-product-id": x.id });
        li.appendChild(el("span", {}, x.qty + " × " + byId[x.id].name));
        li.appendChild(el("span", { class: "price" }, money(byId[x.id].price * x.qty)));
        list.appendChild(li);
      });
      document.getElementById("total").textContent = money(total(items));
      document.getElementById("empty").hidden = items.length > 0;
    }
    if (kind === "checkout") {
      document.getElementById("order").addEventListener("submit", function (e) {
        e.preventDefault();
        var items = cart();
        if (!items.length) return;
        var value = total(items);
        var orderId = "o" + Date.now().toString(36);
        // A purchase is a trusted event: the shop's back end reports it (here the demo's
        // /demo/checkout), never the page with the public key (docs/security.md).
        var vid = window.segserver && segserver.visitorId();
        var reported = !vid ? Promise.resolve() : fetch("/demo/checkout", {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ visitor_id: vid, value: value, order_id: orderId,
            items: items.map(function (x) { return { product_id: x.id, quantity: x.qty }; }) }),
        }).catch(function () {});
        saveCart([]);
        document.getElementById("order").hidden = true;
        var done = document.getElementById("done");
        done.hidden = false;
        document.getElementById("order-id").textContent = orderId + " (" + money(value) + ")";
        // The confirmation is a new view, sent once the purchase is stored.
        reported.then(function () { if (window.segserver) segserver.page(); });
      });
    }
    if (consentRequired) {
      var bar = document.getElementById("consent");
      bar.hidden = false;
      document.getElementById("accept").addEventListener("click", function () {
        bar.hidden = true;
        segserver.consent(true);
      });
    }
    if (main) main.setAttribute("data-ready", "1");
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", page);
  else page();
})();

/*
 * formarket's catalog in the browser: instant search, filters, sorting and the compatibility
 * explorer, over the static data shards that `formarket site build` writes under catalog/
 * (see src/formarket/site/clientdata.py for their format). A page loads nothing until the user
 * searches, filters or sorts; then only the shards it needs. Everything shown is inserted as
 * text, never as HTML.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  var ROOT = script ? script.src.replace(/assets\/formarket\/catalog\.js(\?.*)?$/, "") : "/";
  var STOP = {};
  "a an and are as at be by for from in is it its of on or that the this to with"
    .split(" ").forEach(function (w) { STOP[w] = true; });
  var PAGE = 48;
  var cache = {};

  function config() {
    var node = document.getElementById("fm-data");
    return node ? JSON.parse(node.textContent) : null;
  }

  function fetchJSON(path, version) {
    var url = ROOT + path + "?v=" + encodeURIComponent(version);
    if (!cache[url]) {
      cache[url] = fetch(url).then(function (response) {
        if (response.status === 404) { return null; }
        if (!response.ok) { throw new Error(path + ": HTTP " + response.status); }
        return response.json();
      });
    }
    return cache[url];
  }

  function undelta(list) {
    var out = new Array(list.length), last = 0;
    for (var i = 0; i < list.length; i++) { last += list[i]; out[i] = last; }
    return out;
  }

  function tokens(text) {
    var plain = text.toLowerCase().normalize("NFKD").replace(/[\u0300-\u036f]/g, "");
    return (plain.match(/[a-z0-9]+/g) || []).filter(function (w) {
      return w.length >= 2 && !STOP[w];
    });
  }

  function intersect(a, b) {
    var set = new Set(b);
    return a.filter(function (x) { return set.has(x); });
  }

  function inRange(list, range) {
    return list.filter(function (x) { return x >= range[0] && x < range[1]; });
  }

  /* Ordinals matching every word of the query (as a prefix of an indexed word), those with
     every word in their name first; null when the query has no searchable word. */
  function search(query, data) {
    var words = tokens(query);
    if (!words.length) { return Promise.resolve(null); }
    return Promise.all(words.map(function (word) {
      return fetchJSON("catalog/terms/" + word.slice(0, 2) + ".json", data.version)
        .then(function (shard) {
          var name = new Set(), any = new Set();
          Object.keys(shard || {}).forEach(function (term) {
            if (term.lastIndexOf(word, 0) !== 0) { return; }
            undelta(shard[term][0]).forEach(function (x) { name.add(x); any.add(x); });
            undelta(shard[term][1]).forEach(function (x) { any.add(x); });
          });
          return { name: name, any: any };
        });
    })).then(function (hits) {
      var all = Array.from(hits[0].any).sort(function (a, b) { return a - b; });
      hits.slice(1).forEach(function (hit) { all = all.filter(function (x) { return hit.any.has(x); }); });
      var inName = all.filter(function (x) { return hits.every(function (h) { return h.name.has(x); }); });
      var named = new Set(inName);
      return inName.concat(all.filter(function (x) { return !named.has(x); }));
    });
  }

  function records(ordinals, data) {
    var shards = {};
    ordinals.forEach(function (o) { shards[Math.floor(o / data.shard)] = true; });
    return Promise.all(Object.keys(shards).map(function (n) {
      return fetchJSON("catalog/records/" + n + ".json", data.version).then(function (rows) {
        return [Number(n), rows];
      });
    })).then(function (loaded) {
      var byShard = {};
      loaded.forEach(function (pair) { byShard[pair[0]] = pair[1]; });
      return ordinals.map(function (o) { return byShard[Math.floor(o / data.shard)][o % data.shard]; });
    });
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  /* The same markup as the card macro of site/templates/_macros.html. */
  function card(r) {
    var li = el("li", "fm-card");
    var link = el("a", "fm-card__title", r[2]);
    link.href = ROOT + r[3].replace(/^\//, "");
    li.appendChild(link);
    li.appendChild(document.createTextNode(" "));
    li.appendChild(el("span", "fm-badge fm-badge--" + r[0], r[0]));
    var meta = [r[1], "v" + r[4]].concat([r[5], r[6], r[7]].filter(Boolean)).join(" · ");
    li.appendChild(el("p", "fm-card__meta", meta));
    li.appendChild(el("p", "fm-card__desc", r[8]));
    return li;
  }

  /* A list of results shown PAGE at a time, with a "Show more" button. */
  function Pager(list, more, status) {
    this.list = list; this.more = more; this.status = status;
    this.items = []; this.shown = 0; this.data = null; this.token = 0;
    var self = this;
    if (more) { more.addEventListener("click", function () { self.next(); }); }
  }
  Pager.prototype.show = function (ordinals, data, text) {
    this.items = ordinals; this.data = data; this.shown = 0; this.token++;
    this.list.textContent = "";
    if (this.status) { this.status.textContent = text; }
    return this.next();
  };
  Pager.prototype.next = function () {
    var self = this, token = this.token;
    var slice = this.items.slice(this.shown, this.shown + PAGE);
    this.shown += slice.length;
    if (this.more) { this.more.hidden = this.shown >= this.items.length; }
    return records(slice, this.data).then(function (rows) {
      if (token !== self.token) { return; }
      rows.forEach(function (r) { self.list.appendChild(card(r)); });
    });
  };

  function plural(n, word) { return n + " " + (n === 1 ? word.replace(/s$/, "") : word); }

  function debounce(fn, ms) {
    var timer = null;
    return function () { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }

  /* Leaving the page aborts the requests in flight: that is not a failure to report. */
  var leaving = false;
  window.addEventListener("pagehide", function () { leaving = true; });

  function fail(node) {
    return function (error) {
      if (leaving) { return; }
      if (node) { node.textContent = "The catalog data could not be loaded; try reloading the page."; }
      console.warn(error);
    };
  }

  /* --- catalog pages: search, filters and sorting within one kind ---------------------- */

  function catalogPage(root, data) {
    var kind = data.scope, range = data.ranges[kind];
    var input = root.querySelector("#fm-q"), sort = root.querySelector("#fm-sort");
    var status = root.querySelector(".fm-status");
    var pager = new Pager(root.querySelector(".fm-cards"), root.querySelector(".fm-more"), status);
    var boxes = Array.prototype.slice.call(root.querySelectorAll(".fm-facet input"));
    var facetIndex = {};
    data.facets.forEach(function (f) {
      facetIndex[f.key] = {};
      f.values.forEach(function (v, i) { facetIndex[f.key][v.key] = i; });
    });

    var params = new URLSearchParams(location.search);
    input.value = params.get("q") || "";
    if (params.get("sort")) { sort.value = params.get("sort"); }
    boxes.forEach(function (box) { box.checked = params.getAll(box.name).indexOf(box.value) >= 0; });

    function state() {
      var chosen = {};
      boxes.forEach(function (box) {
        if (box.checked) { (chosen[box.name] = chosen[box.name] || []).push(box.value); }
      });
      return { q: input.value.trim(), facets: chosen, sort: sort.value };
    }

    function remember(s) {
      var p = new URLSearchParams();
      if (s.q) { p.set("q", s.q); }
      Object.keys(s.facets).forEach(function (k) { s.facets[k].forEach(function (v) { p.append(k, v); }); });
      if (s.sort !== "name") { p.set("sort", s.sort); }
      var query = p.toString();
      history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
    }

    function facetSet(key, values) {
      return Promise.all(values.map(function (v) {
        return fetchJSON("catalog/postings/" + kind + "/" + key + "/" + facetIndex[key][v] + ".json", data.version);
      })).then(function (lists) {
        var union = new Set();
        lists.forEach(function (l) { undelta(l || []).forEach(function (x) { union.add(x); }); });
        return union;
      });
    }

    var update = function () {
      var s = state();
      remember(s);
      var keys = Object.keys(s.facets).filter(function (k) { return k in facetIndex; });
      var filters = Promise.all(keys.map(function (k) { return facetSet(k, s.facets[k]); }));
      var ranks = s.sort === "name" ? Promise.resolve(null)
        : fetchJSON("catalog/sort/" + kind + "-" + s.sort + ".json", data.version);
      Promise.all([search(s.q, data), filters, ranks]).then(function (got) {
        var found = got[0], sets = got[1], rank = got[2];
        var list;
        if (found === null) {
          list = [];
          for (var o = range[0]; o < range[1]; o++) { list.push(o); }
        } else {
          list = inRange(found, range);
        }
        sets.forEach(function (set) { list = list.filter(function (x) { return set.has(x); }); });
        if (rank) {
          list.sort(function (a, b) { return rank[a - range[0]] - rank[b - range[0]]; });
        } else if (found === null) {
          list.sort(function (a, b) { return a - b; });
        }
        var total = range[1] - range[0];
        var text = (found === null && !keys.length) ? plural(total, data.plural)
          : plural(list.length, data.plural) + " of " + total + " match";
        return pager.show(list, data, text);
      }).catch(fail(status));
    };

    input.addEventListener("input", debounce(update, 150));
    sort.addEventListener("change", update);
    boxes.forEach(function (box) { box.addEventListener("change", update); });
    var s = state();
    if (s.q || Object.keys(s.facets).length || s.sort !== "name") { update(); }
  }

  /* --- the home page: instant search over every kind ----------------------------------- */

  function homeSearch(root, data) {
    var input = root.querySelector("#fm-q"), list = root.querySelector(".fm-search-results");
    var pager = new Pager(list, null, null);
    var run = debounce(function () {
      search(input.value, data).then(function (found) {
        if (found === null) { list.textContent = ""; return; }
        if (!found.length) {
          list.textContent = "";
          list.appendChild(el("li", "fm-empty", "Nothing matches “" + input.value.trim() + "”."));
          return;
        }
        pager.show(found.slice(0, 10), data, "");
      }).catch(fail(list));
    }, 150);
    input.addEventListener("input", run);
  }

  /* --- the compatibility explorer ------------------------------------------------------- */

  function explorer(root, data) {
    var status = root.querySelector(".fm-explorer__result .fm-status");
    var pager = new Pager(root.querySelector(".fm-explorer__result .fm-cards"),
      root.querySelector(".fm-explorer__result .fm-more"), status);

    function ordinalOf(kind, id) {
      var publisher = id.split("/")[0];
      if (!/^[a-z0-9-]+$/.test(publisher)) { return Promise.resolve(null); }
      return fetchJSON("catalog/ids/" + publisher + ".json", data.version).then(function (table) {
        var key = kind + ":" + id;
        return table && key in table ? table[key] : null;
      });
    }

    function showFor(kind, id) {
      Promise.all([ordinalOf(kind, id), fetchJSON("catalog/compat.json", data.version)])
        .then(function (got) {
          var ordinal = got[0], compat = got[1];
          if (ordinal === null) {
            pager.show([], data, "There is no " + kind + " " + id + " in the catalog.");
            return null;
          }
          return records([ordinal], data).then(function (rows) {
            var name = rows[0][2], list = [];
            if (kind === "agent") {
              var need = compat.agents[String(ordinal)];
              if (need === "none") {
                return pager.show([], data, name + " needs no model: it is deployed on its own.");
              }
              if (need && typeof need === "object" && !Array.isArray(need)) {
                list = [need.model];
              } else {
                (need || []).forEach(function (g) { list = list.concat(undelta(compat.groups[g])); });
              }
              list.sort(function (a, b) { return a - b; });
              return pager.show(list, data, plural(list.length, "compatible models") + " for " + name);
            }
            var group = -1;
            compat.groups.some(function (g, i) {
              if (undelta(g).indexOf(ordinal) >= 0) { group = i; return true; }
              return false;
            });
            Object.keys(compat.agents).forEach(function (a) {
              var need = compat.agents[a];
              if (Array.isArray(need) ? need.indexOf(group) >= 0
                : (need && need !== "none" && need.model === ordinal)) { list.push(Number(a)); }
            });
            list.sort(function (a, b) { return a - b; });
            return pager.show(list, data, plural(list.length, "compatible agents") + " for " + name);
          });
        }).catch(fail(status));
    }

    Array.prototype.forEach.call(root.querySelectorAll(".fm-picker"), function (picker) {
      var kind = picker.getAttribute("data-scope"), range = data.ranges[kind];
      var input = picker.querySelector("input"), suggest = picker.querySelector(".fm-suggest");
      input.addEventListener("input", debounce(function () {
        search(input.value, data).then(function (found) {
          suggest.textContent = "";
          if (found === null) { return; }
          return records(inRange(found, range).slice(0, 8), data).then(function (rows) {
            rows.forEach(function (r) {
              var li = el("li"), button = el("button", "fm-suggest__item", r[2] + " (" + r[1] + ")");
              button.type = "button";
              button.addEventListener("click", function () {
                suggest.textContent = "";
                input.value = r[2];
                history.replaceState(null, "", location.pathname + "?" + kind + "=" + encodeURIComponent(r[1]));
                showFor(kind, r[1]);
              });
              li.appendChild(button);
              suggest.appendChild(li);
            });
          });
        }).catch(fail(status));
      }, 150));
    });

    var params = new URLSearchParams(location.search);
    if (params.get("agent")) { showFor("agent", params.get("agent")); }
    else if (params.get("model")) { showFor("model", params.get("model")); }
  }

  function start() {
    var data = config();
    if (!data) { return; }
    var catalog = document.querySelector(".fm-catalog");
    if (catalog) { catalogPage(catalog, data); }
    var home = document.querySelector(".fm-home-search");
    if (home) { homeSearch(home, data); }
    var explore = document.querySelector(".fm-explorer");
    if (explore) { explorer(explore, data); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();

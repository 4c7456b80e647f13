// Progressive enhancement only: sorting of the tables (each group's agreement table and the
// study's), filtering of the agreement rows by text and verdict, and the outcome toggles.
(function () {
  "use strict";

  function key(row, col, numeric) {
    var cell = row.cells[col];
    if (!numeric) { return cell.textContent.trim().toLowerCase(); }
    var v = cell.getAttribute("data-v");
    return v === "" || v === null ? null : parseFloat(v);
  }

  function sortable(table) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);

    function sortBy(col) {
      var th = headers[col];
      var numeric = th.getAttribute("data-kind") === "num";
      var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
      var sign = dir === "ascending" ? 1 : -1;
      headers.forEach(function (h) { h.setAttribute("aria-sort", "none"); });
      th.setAttribute("aria-sort", dir);
      var keyed = rows.map(function (row, i) { return [key(row, col, numeric), i, row]; });
      keyed.sort(function (a, b) {
        if (a[0] === b[0]) { return a[1] - b[1]; }
        if (a[0] === null) { return 1; }
        if (b[0] === null) { return -1; }
        return (a[0] < b[0] ? -1 : 1) * sign;
      });
      keyed.forEach(function (k) { body.appendChild(k[2]); });
    }

    headers.forEach(function (th, col) {
      var button = th.querySelector("button");
      if (button) { button.addEventListener("click", function () { sortBy(col); }); }
    });
    return rows;
  }

  var study = document.getElementById("study-table");
  if (study) { sortable(study); }

  var tables = Array.prototype.slice.call(document.querySelectorAll("table.agreement"));
  if (!tables.length) { return; }
  var rows = [];
  tables.forEach(function (t) { rows = rows.concat(sortable(t)); });
  var filter = document.getElementById("filter");
  var verdict = document.getElementById("verdict-filter");
  var shown = document.getElementById("shown");
  var toggles = Array.prototype.slice.call(document.querySelectorAll("#toggles input[data-outcome]"));
  document.getElementById("controls").hidden = false;

  // A row's text, with the whole test id its first cell may show only the end of.
  function searchable(row) {
    var full = row.cells[0].getAttribute("title") || "";
    return (full + " " + row.textContent).toLowerCase();
  }

  function applyFilter() {
    var text = filter.value.trim().toLowerCase();
    var want = verdict.value;
    var off = {};
    toggles.forEach(function (box) { if (!box.checked) { off[box.getAttribute("data-outcome")] = true; } });
    var n = 0;
    rows.forEach(function (row) {
      var v = row.getAttribute("data-verdict");
      var match = want === "test-failed" ? row.hasAttribute("data-test-failed") : v === want;
      var ok = (!want || match) && !off[v] &&
        (!text || searchable(row).indexOf(text) !== -1);
      row.hidden = !ok;
      if (ok) { n += 1; }
    });
    shown.textContent = "showing " + n + " of " + rows.length;
  }

  filter.addEventListener("input", applyFilter);
  verdict.addEventListener("change", applyFilter);
  toggles.forEach(function (box) { box.addEventListener("change", applyFilter); });
  applyFilter();
})();

// A link to a failure's drill-down (#anchor) opens it, on click and when the page loads with it.
(function () {
  "use strict";
  function reveal() {
    var id = decodeURIComponent(window.location.hash.slice(1));
    var target = id ? document.getElementById(id) : null;
    if (target && target.tagName === "DETAILS") { target.open = true; }
    for (var up = target ? target.parentElement : null; up; up = up.parentElement) {
      if (up.tagName === "DETAILS") { up.open = true; }
    }
  }
  window.addEventListener("hashchange", reveal);
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a[href^='#']") : null;
    if (link && link.getAttribute("href") === window.location.hash) { reveal(); }
  });
  reveal();
})();

// The person form, enhanced: add and remove address rows without a round trip,
// a real <select> for each country, and focus where the user needs it next.
// Without this script the page works as is (see docs/people.md).
(function () {
  "use strict";
  var form = document.getElementById("person-form");
  if (!form) return;
  var d = form.dataset, prefix = d.prefix, max = +d.max;
  var total = document.getElementById("id_" + prefix + "-TOTAL_FORMS");
  var rows = form.querySelector("[data-address-rows]");
  var template = document.getElementById("address-template");
  var add = form.querySelector("[data-add-address]");
  var status = document.getElementById("address-status");
  var names = document.getElementById("country-names");
  var FIELD = "input:not([type=hidden]),select";
  var proto;

  function say(text, n) { status.textContent = text.replace("%s", n); }
  function num(row) { return row.querySelector("[data-num]").textContent; }
  function live() {
    return rows.querySelectorAll("[data-address-row]:not(.removing)").length;
  }
  function limit() { if (add) add.hidden = live() >= max; }

  // One <select> of every country, built once from the page's datalist and
  // cloned for each row; the name goes to the server, as typed names do.
  function countrySelect(input) {
    if (!proto) {
      proto = document.createElement("select");
      proto.add(new Option(d.choose, ""));
      names.querySelectorAll("option").forEach(function (o) {
        proto.add(new Option(o.value, o.value));
      });
    }
    var select = proto.cloneNode(true), want = input.value.trim().toLowerCase();
    ["id", "name", "required", "autocomplete", "autofocus", "aria-describedby",
     "aria-invalid"].forEach(function (a) {
      if (input.hasAttribute(a)) select.setAttribute(a, input.getAttribute(a));
    });
    var hit = Array.prototype.find.call(select.options, function (o) {
      return o.value.toLowerCase() === want;
    });
    if (hit) hit.selected = true;
    else if (want) select.add(new Option(input.value, input.value, true, true), 1);
    input.replaceWith(select);
  }

  function renumber(row, from, to) {
    var old = prefix + "-" + from + "-", now = prefix + "-" + to + "-";
    [row].concat(Array.from(row.querySelectorAll("*"))).forEach(function (el) {
      ["id", "name", "for", "aria-describedby", "autocomplete"].forEach(function (a) {
        var v = el.getAttribute(a);
        if (v && v.indexOf(old) >= 0) el.setAttribute(a, v.split(old).join(now));
      });
    });
    row.id = "address-" + to;
    row.querySelector("[data-num]").textContent = to + 1;
    var button = row.querySelector("[data-remove]");
    if (button) button.textContent = d.remove.replace("%s", to + 1);
  }

  // Rows already stored keep their "Remove address N" checkbox: removal waits
  // for Save and can be undone. A row added here is simply taken away again.
  function enhance(row) {
    row.querySelectorAll("input[data-country]").forEach(countrySelect);
    var box = row.querySelector("input[name$='-DELETE']");
    if (row.hasAttribute("data-existing")) {
      box.addEventListener("change", function () {
        row.classList.toggle("removing", box.checked);
        say(box.checked ? d.marked : d.kept, num(row));
        limit();
      });
      row.classList.toggle("removing", box.checked);
      return;
    }
    var button = document.createElement("button");
    button.type = "button";
    button.setAttribute("data-remove", "");
    button.textContent = d.remove.replace("%s", num(row));
    box.parentNode.replaceWith(button);
    button.addEventListener("click", function () {
      var index = Array.prototype.indexOf.call(rows.children, row), n = num(row);
      var later = Array.prototype.slice.call(rows.children, index + 1);
      row.remove();
      later.forEach(function (r, i) { renumber(r, index + i + 1, index + i); });
      total.value = +total.value - 1;
      say(d.removed, n);
      limit();
      if (add && !add.hidden) add.focus();
    });
  }

  rows.querySelectorAll("[data-address-row]").forEach(enhance);
  limit();

  if (add) add.addEventListener("click", function (event) {
    event.preventDefault();
    if (live() >= max) return;
    var i = +total.value, empty = rows.querySelector("[data-no-addresses]");
    if (empty) empty.remove();
    rows.insertAdjacentHTML("beforeend", template.innerHTML
      .replace(/__prefix__/g, i).replace(/__num__/g, i + 1));
    total.value = i + 1;
    var row = rows.lastElementChild;
    enhance(row);
    limit();
    row.querySelector(FIELD).focus();
  });

  // After a failed submit: focus the summary; its links, and those of a stale
  // submit's comparison table, focus their field.
  function jump(event) {
    var link = event.target.closest("a[href^='#']");
    var target = link && document.getElementById(link.hash.slice(1));
    if (!target) return;
    event.preventDefault();
    if (target.tagName === "FIELDSET") target = target.querySelector(FIELD) || target;
    target.focus();
    target.scrollIntoView({ block: "center" });
  }
  var summary = document.getElementById("error-summary");
  if (summary) {
    summary.focus();
    summary.addEventListener("click", jump);
  }
  var conflict = document.getElementById("conflict");
  if (conflict) conflict.addEventListener("click", jump);

  // One submit at a time: a second click would only be refused by the server.
  form.addEventListener("submit", function (event) {
    if (event.submitter && event.submitter.name) return;
    if (form.dataset.sent) event.preventDefault();
    form.dataset.sent = "1";
  });
  window.addEventListener("pageshow", function () { delete form.dataset.sent; });
})();

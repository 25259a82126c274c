// Switchyard web UI: the progressive enhancement over server-rendered pages.
// Pages read without this script; changes go through the public JSON API
// (/api/v1) with the session cookie and the page's CSRF token, so the UI
// writes exactly as every other client does: same validation, same ETag
// checks, same audit log. Compiled into the binary; no dependencies.
(function () {
  "use strict";

  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  async function call(method, url, body, etag) {
    const headers = { "X-CSRF-Token": csrf(), Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (etag) headers["If-Match"] = etag.startsWith('"') ? etag : '"' + etag + '"';
    let resp;
    try {
      resp = await fetch(url, {
        method, headers, credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      return { status: 0, json: { error: { code: "network", message: "The server could not be reached. Nothing was saved; try again." } } };
    }
    let json = null;
    const text = await resp.text();
    try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
    return { status: resp.status, json, etag: resp.headers.get("ETag") };
  }

  // ---- Reading a form into a JSON document --------------------------------
  // data-obj="name": an object; data-list="name": an array of its
  // [data-item] children; data-key="name": a value. data-type: string
  // (default), number, int, bool, json, lines (one string per line or comma),
  // raw-json-or-string (JSON if it parses, else the text). data-optional:
  // omitted when empty. Elements under [hidden] are skipped.
  class FieldError extends Error {
    constructor(el, message) { super(message); this.el = el; }
  }

  function valueOf(el) {
    const type = el.dataset.type || "string";
    const raw = el.type === "checkbox" ? el.checked : el.value;
    if (type === "bool") return el.type === "checkbox" ? el.checked : raw === "true";
    const text = String(raw).trim();
    if (el.hasAttribute("data-optional") && text === "") return undefined;
    switch (type) {
      case "number": case "int": {
        if (text === "") throw new FieldError(el, "A number is required.");
        const n = Number(text);
        if (!Number.isFinite(n) || (type === "int" && !Number.isInteger(n))) throw new FieldError(el, "Not a valid " + (type === "int" ? "whole number" : "number") + ".");
        return n;
      }
      case "percent": {
        // A percentage with up to two decimals, as basis points.
        const n = Number(text);
        if (text === "" || !Number.isFinite(n)) throw new FieldError(el, "A percentage is required.");
        return Math.round(n * 100);
      }
      case "json":
        if (text === "") return null;
        try { return JSON.parse(text); } catch (e) { throw new FieldError(el, "Not valid JSON: " + e.message); }
      case "json-or-string":
        try { return JSON.parse(text); } catch (e) { return String(raw); }
      case "lines":
        return text.split(/[\n,]/).map((s) => s.trim()).filter((s) => s !== "");
      case "lines-json":
        // One value per line or comma, each JSON if it parses ("3", "true",
        // "\"quoted text\"") else the text itself.
        return text.split(/[\n,]/).map((s) => s.trim()).filter((s) => s !== "").map((s) => {
          try { return JSON.parse(s); } catch (e) { return s; }
        });
      default:
        return String(raw);
    }
  }

  function isHidden(el, root) {
    for (let e = el; e && e !== root; e = e.parentElement) if (e.hidden) return true;
    return false;
  }

  function readScope(scope, root) {
    const out = {};
    const walk = (el) => {
      for (const child of el.children) {
        if (child.hidden || child.tagName === "TEMPLATE") continue;
        if (child.hasAttribute("data-obj")) {
          out[child.dataset.obj] = readScope(child, root);
        } else if (child.hasAttribute("data-list")) {
          out[child.dataset.list] = readList(child, root);
        } else if (child.hasAttribute("data-map")) {
          // Items with a "k" and a "v" value, as one object.
          const obj = {};
          for (const it of readList(child, root)) if (it.k !== undefined && it.k !== "") obj[it.k] = it.v;
          out[child.dataset.map] = obj;
        } else if (child.hasAttribute("data-key")) {
          const v = valueOf(child);
          if (v !== undefined) out[child.dataset.key] = v;
        } else {
          walk(child);
        }
      }
    };
    walk(scope);
    return out;
  }

  function readList(list, root) {
    const items = [];
    const walk = (el) => {
      for (const child of el.children) {
        if (child.hidden || child.tagName === "TEMPLATE") continue;
        if (child.hasAttribute("data-item")) {
          if (child.hasAttribute("data-scalar")) {
            const input = child.querySelector("[data-key]");
            const v = input ? valueOf(input) : undefined;
            if (v !== undefined) items.push(v);
          } else {
            items.push(readScope(child, root));
          }
        } else if (!child.hasAttribute("data-list") && !child.hasAttribute("data-obj") && !child.hasAttribute("data-map")) {
          walk(child);
        }
      }
    };
    walk(list);
    return items;
  }

  // ---- Showing errors -------------------------------------------------------
  function clearErrors(form) {
    form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
    form.querySelectorAll(".field-error").forEach((el) => { el.textContent = ""; });
    const alert = form.querySelector(".form-alert");
    if (alert) { alert.hidden = true; alert.textContent = ""; }
  }

  function showAlert(box, kind, title, message) {
    if (!box) { window.alert(title + "\n" + (message || "")); return; }
    box.className = "alert " + kind + " form-alert";
    box.replaceChildren();
    const strong = document.createElement("strong");
    strong.textContent = title;
    box.append(strong);
    if (message) box.append(document.createTextNode(message));
    box.hidden = false;
    box.setAttribute("role", "alert");
    box.scrollIntoView({ block: "nearest" });
  }

  function markField(el, message) {
    el.setAttribute("aria-invalid", "true");
    const box = (el.closest(".field") && el.closest(".field").querySelector(".field-error")) ||
      el.querySelector(":scope > .field-error");
    if (box) box.textContent = message;
    const focusable = el.matches("input, select, textarea, button") ? el : el.querySelector("input, select, textarea");
    if (focusable) focusable.focus();
    else el.scrollIntoView({ block: "center" });
  }

  // A field named by its path in the JSON document the form sends
  // ("environments.production.rules[1].serve.split.weights"): found the way
  // the form is read (data-obj, data-list/data-map + item index, data-key),
  // so it stays right after items were added, removed or moved. The
  // deepest element found on the way, or null.
  function locate(form, path) {
    if (!path) return null;
    const parts = [];
    path.replace(/([^.\[\]]+)|\[(\d+)\]/g, (_, name, index) => { parts.push(name !== undefined ? name : Number(index)); return ""; });
    const named = (scope, name) => {
      const stack = [...scope.children];
      while (stack.length) {
        const el = stack.shift();
        if (el.hidden || el.tagName === "TEMPLATE") continue;
        if (el.dataset.obj === name || el.dataset.list === name || el.dataset.map === name || el.dataset.key === name) return el;
        if (!el.hasAttribute("data-obj") && !el.hasAttribute("data-list") && !el.hasAttribute("data-map") && !el.hasAttribute("data-item")) stack.unshift(...el.children);
      }
      return null;
    };
    const items = (list) => [...list.querySelectorAll("[data-item]")].filter((it) => it.parentElement.closest("[data-list], [data-map]") === list && !isHidden(it, list));
    let here = form;
    let found = null;
    for (const part of parts) {
      const next = typeof part === "number" ? (here.matches("[data-list], [data-map]") ? items(here)[part] : null) : named(here, part);
      if (!next) break;
      here = next;
      found = next;
      if (next.hasAttribute("data-key")) break;
    }
    return found;
  }

  // The compiler's message names the environment, the entity and the field:
  // 'environment "production": flag "checkout": rules[0].conditions[1].value: invalid regex ...'.
  // A flag's targeting is under environments.ENV in the flag's form.
  function compilerField(form, message) {
    const m = /environment "([^"]+)": (\w+) "[^"]*": ([^:\s]+):/.exec(message || "");
    if (!m) return null;
    const [, env, kind, field] = m;
    const targeting = /^(rules|fallthrough|prerequisites|off_variation|enabled)\b/.test(field);
    if (kind === "flag" && targeting && form.querySelector('[data-obj="environments"]')) return "environments." + env + "." + field;
    return field;
  }

  // A field named by the server ("environments.production.rules[0].conditions[1].value"
  // or "variations[2]") is found by its data-field; failing that, by the
  // longest prefix that names one.
  function findField(form, path) {
    if (!path) return null;
    let p = path;
    while (p) {
      const el = form.querySelector('[data-field="' + CSS.escape(p) + '"]');
      if (el) return el;
      const cut = Math.max(p.lastIndexOf("."), p.lastIndexOf("["));
      if (cut <= 0) break;
      p = p.slice(0, cut);
    }
    return null;
  }

  // The compiler names a field inside its message ("... rules[0].conditions[1].value: ...").
  function fieldInMessage(message) {
    const m = /((?:environments\.[\w.-]+\.)?(?:rules|variations|prerequisites|fallthrough|conditions|weights|metrics)[\w.\[\]-]*)/.exec(message || "");
    return m ? m[1] : null;
  }

  function reportError(form, result) {
    const err = (result.json && result.json.error) || {};
    // A button outside any form reports in the page's alert, not in some form's.
    const box = (form === document.body ? null : form.querySelector(".form-alert")) || document.getElementById("page-alert");
    if (result.status === 412) {
      showAlert(box, "warn", "Someone else saved a change since you opened this page.",
        " Nothing was saved. Reload the page to see their change, then make yours again.");
      return;
    }
    if (result.status === 403) {
      showAlert(box, "error", "Not allowed.", " " + (err.message || "Your role does not allow this change."));
      return;
    }
    if (result.status === 401) {
      showAlert(box, "error", "Your session has ended.", " Sign in again; nothing was saved.");
      return;
    }
    const message = err.message || ("The server answered " + result.status + ".");
    const named = err.field || compilerField(form, message);
    const field = findField(form, named) || (named && locate(form, named)) || findField(form, fieldInMessage(message));
    // Beside the field, the compiler's words without the path it names.
    const at = /^environment "[^"]+": \w+ "[^"]*": [^:\s]+: /.exec(message);
    if (field) markField(field, at ? message.slice(at[0].length) : message);
    showAlert(box, "error", "Not saved.", " " + message);
  }

  function busy(el, on) {
    el.querySelectorAll("button").forEach((b) => { b.disabled = on; });
    if (el.tagName === "BUTTON") el.disabled = on;
  }

  function afterSuccess(el, result) {
    const then = el.dataset.then || "reload";
    if (then === "secret") {
      const out = document.querySelector(el.dataset.secretTarget || "#secret");
      if (out && result.json) {
        out.hidden = false;
        out.querySelector(".secret").textContent = result.json.secret || "";
        out.scrollIntoView({ block: "nearest" });
        out.querySelector(".secret").focus();
      }
      // The form is emptied: submitting it again makes another one.
      if (el.tagName === "FORM") { el.reset(); enhance(el); }
      return;
    }
    if (then === "reload") { window.location.reload(); return; }
    let next = then;
    if (result.json && typeof result.json === "object") {
      next = next.replace(/\{(\w+)\}/g, (_, k) => encodeURIComponent(result.json[k] != null ? result.json[k] : ""));
    }
    window.location.assign(next);
  }

  async function submitForm(form) {
    clearErrors(form);
    let body;
    try {
      body = readScope(form, form);
      if (form.dataset.wrap) body = { [form.dataset.wrap]: body };
    } catch (e) {
      if (e instanceof FieldError) { markField(e.el, e.message); showAlert(form.querySelector(".form-alert"), "error", "Not saved.", " " + e.message); return; }
      throw e;
    }
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    busy(form, true);
    const result = await call(form.dataset.method || "POST", form.dataset.api, body, form.dataset.etag);
    busy(form, false);
    if (result.status >= 200 && result.status < 300) afterSuccess(form, result);
    else reportError(form, result);
  }

  async function clickAction(button) {
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    let body;
    if (button.dataset.body !== undefined) body = button.dataset.body === "" ? undefined : JSON.parse(button.dataset.body);
    busy(button, true);
    const result = await call(button.dataset.method || "POST", button.dataset.call, body, button.dataset.etag);
    busy(button, false);
    if (result.status >= 200 && result.status < 300) afterSuccess(button, result);
    else reportError(button.closest("form") || document.body, result);
  }

  // ---- Repeated groups --------------------------------------------------------
  let counter = 0;
  function addItem(button) {
    const wrap = button.closest("[data-repeat]");
    const template = wrap && wrap.querySelector(":scope > template");
    const list = wrap && wrap.querySelector(":scope > [data-list], :scope > [data-map], :scope [data-list], :scope [data-map]");
    if (!template || !list) return;
    counter += 1;
    const html = template.innerHTML.replace(/__N__/g, "n" + Date.now().toString(36) + counter);
    const holder = document.createElement("div");
    holder.innerHTML = html;
    const added = [...holder.children];
    added.forEach((el) => list.append(el));
    enhance(list);
    const first = added[0] && added[0].querySelector("input, select, textarea");
    if (first) first.focus();
  }

  // data-switch-deep: the switch also applies inside the items of its scope
  // (a flag's type choosing the value input of every variation).
  function onSwitch(select) {
    const deep = select.hasAttribute("data-switch-deep");
    const scope = deep ? (select.closest("form") || document) : (select.closest("[data-item], [data-obj], form") || document);
    const name = select.dataset.switch;
    scope.querySelectorAll('[data-when-' + name + ']').forEach((el) => {
      if (!deep && el.closest("[data-item], [data-obj], form") !== scope && el.closest("[data-item], [data-obj], form") !== select.closest("[data-item], [data-obj], form")) return;
      const values = el.getAttribute("data-when-" + name).split(" ");
      el.hidden = !values.includes(select.value);
    });
  }

  function enhance(root) {
    root.querySelectorAll("select[data-switch]").forEach(onSwitch);
    if (root !== document) document.querySelectorAll("select[data-switch-deep]").forEach(onSwitch);
  }

  document.addEventListener("submit", (ev) => {
    const form = ev.target;
    if (form.matches("form[data-api]")) { ev.preventDefault(); submitForm(form); }
  });

  // button[data-copy="CSS"]: copies the text of the element CSS names (a
  // secret shown once); where the clipboard is not available (plain HTTP
  // off localhost), selects the text for the person to copy.
  async function copyText(button) {
    const el = document.querySelector(button.dataset.copy);
    if (!el) return;
    const label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    try {
      await navigator.clipboard.writeText(el.textContent);
      button.textContent = "Copied";
    } catch (e) {
      const range = document.createRange();
      range.selectNodeContents(el);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      button.textContent = "Selected: press Ctrl+C (or ⌘C)";
    }
    setTimeout(() => { button.textContent = label; }, 4000);
  }

  document.addEventListener("click", (ev) => {
    const t = ev.target.closest("button");
    if (!t) return;
    if (t.hasAttribute("data-call")) { ev.preventDefault(); clickAction(t); return; }
    if (t.hasAttribute("data-copy")) { ev.preventDefault(); copyText(t); return; }
    if (t.hasAttribute("data-add")) { ev.preventDefault(); addItem(t); return; }
    const item = t.closest("[data-item]");
    if (t.hasAttribute("data-remove") && item) { ev.preventDefault(); item.remove(); return; }
    if (t.hasAttribute("data-move") && item) {
      ev.preventDefault();
      if (t.dataset.move === "up" && item.previousElementSibling && item.previousElementSibling.hasAttribute("data-item")) item.parentElement.insertBefore(item, item.previousElementSibling);
      if (t.dataset.move === "down" && item.nextElementSibling) item.parentElement.insertBefore(item.nextElementSibling, item);
      t.focus();
    }
  });

  document.addEventListener("change", (ev) => {
    if (ev.target.matches("select[data-switch]")) onSwitch(ev.target);
    if (ev.target.matches("select[data-navigate]")) window.location.assign(ev.target.value);
  });

  // ---- Parts of a page that refresh themselves ----------------------------
  // [data-refresh="URL"][data-every="SECONDS"]: the URL answers the element's
  // new HTML; a fragment without data-refresh ends the refreshing.
  function refresher(el) {
    const every = Math.max(2, Number(el.dataset.every || 10)) * 1000;
    let timer = null;
    const tick = async () => {
      if (!document.hidden) {
        try {
          const resp = await fetch(el.dataset.refresh, { credentials: "same-origin", headers: { Accept: "text/html" } });
          if (resp.ok) {
            const holder = document.createElement("div");
            holder.innerHTML = await resp.text();
            const next = holder.firstElementChild;
            if (next) {
              el.replaceWith(next);
              if (next.hasAttribute("data-refresh")) refresher(next);
              return;
            }
          }
        } catch (e) { /* try again at the next tick */ }
      }
      timer = setTimeout(tick, every);
    };
    timer = setTimeout(tick, every);
    return timer;
  }

  function start() {
    enhance(document);
    document.querySelectorAll("[data-refresh]").forEach(refresher);
    document.documentElement.classList.add("js");
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

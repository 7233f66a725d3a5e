"""The static front end: relative URLs only, and app.js really renders the list
(run under node with a minimal DOM stub; the replica tests load it in a browser)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from tests.app.support import APP_DIR

FRONTEND = APP_DIR / "frontend"

NODE_HARNESS = r"""
const fs = require("fs");
const vm = require("vm");
const elements = {};
function element(id) {
  return elements[id] ??= {
    id, textContent: "", hidden: false, children: [], listeners: {},
    classList: { items: [], add(c) { this.items.push(c); } },
    replaceChildren(...c) { this.children = c; },
    addEventListener(type, fn) { this.listeners[type] = fn; },
  };
}
const fetched = [];
const responses = {
  "/api/problems/": [200, { count: 2, results: [
    { id: 2, title: "Two Sum", created_at: "2026-11-26T19:00:00+09:00" },
    { id: 1, title: "<b>FizzBuzz</b>", created_at: "2026-11-25T09:30:00+09:00" } ] }],
  "/api/version": [200, { version: "9.9.9" }],
  "/api/me/": [401, { error: "not signed in" }],
};
const context = {
  console,
  document: {
    getElementById: element,
    createElement: (tag) => ({ tag, className: "", textContent: "", children: [],
      append(...c) { this.children.push(...c); } }),
  },
  window: { location: { reload() {} } },
  fetch: async (url) => {
    fetched.push(url);
    const [status, body] = responses[url] || [404, {}];
    return { ok: status < 400, status, json: async () => body };
  },
  Date,
};
vm.createContext(context);
vm.runInContext(fs.readFileSync(process.argv[process.argv.length - 1], "utf8"), context);
setTimeout(() => {
  const items = element("problems").children.map((li) => ({
    title: li.children[0].textContent, time: li.children[2].textContent,
    datetime: li.children[2].dateTime }));
  console.log(JSON.stringify({
    fetched, items, status: element("status").textContent,
    version: element("version").textContent, loginHidden: element("login").hidden,
  }));
}, 50);
"""


def test_index_links_assets_and_sign_in() -> None:
    html = (FRONTEND / "index.html").read_text()
    assert 'src="app.js"' in html and 'href="style.css"' in html
    assert 'href="/auth/google/login"' in html
    assert "Sign in with Google" in html
    assert (FRONTEND / "style.css").stat().st_size > 0


def test_app_js_uses_relative_urls_only() -> None:
    js = (FRONTEND / "app.js").read_text()
    urls = re.findall(r'"(/[^"]*)"', js)
    assert "/api/problems/" in urls and "/api/version" in urls
    assert not re.search(r"https?://", js)


def test_app_js_renders_problems_and_version() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (the replica's browser test covers the page)")
    result = subprocess.run(
        [node, "-e", NODE_HARNESS, str(FRONTEND / "app.js")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout)
    assert set(state["fetched"]) == {"/api/problems/", "/api/version", "/api/me/"}
    assert [item["title"] for item in state["items"]] == ["Two Sum", "<b>FizzBuzz</b>"]
    assert state["items"][0]["datetime"] == "2026-11-26T19:00:00+09:00"
    assert "2026" in state["items"][0]["time"]
    assert state["status"] == "2 problem(s)"
    assert state["version"] == "9.9.9"
    assert state["loginHidden"] is False  # anonymous: the sign-in link stays

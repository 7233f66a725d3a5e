// jobtory front end: plain JS, no build step. All URLs are relative: Caddy serves
// this directory at / and proxies /api/* and /auth/* to Django on the same origin.
"use strict";

const $ = (id) => document.getElementById(id);

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.error || `${url}: HTTP ${response.status}`);
    error.status = response.status;
    error.body = body;
    throw error;
  }
  return body;
}

async function postJSON(url, data) {
  const { csrfToken } = await getJSON("/api/csrf/");
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken },
    body: JSON.stringify(data || {}),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.error || `${url}: HTTP ${response.status}`);
    error.body = body;
    throw error;
  }
  return body;
}

function formatTime(iso) {
  return new Date(iso).toLocaleString("ko-KR", { timeZone: "Asia/Seoul" });
}

async function loadProblems() {
  const list = $("problems");
  try {
    const data = await getJSON("/api/problems/");
    list.replaceChildren(
      ...data.results.map((problem) => {
        const item = document.createElement("li");
        item.className = "problem";
        const title = document.createElement("span");
        title.className = "title";
        title.textContent = problem.title;
        const time = document.createElement("time");
        time.dateTime = problem.created_at;
        time.textContent = formatTime(problem.created_at);
        item.append(title, " ", time);
        return item;
      }),
    );
    $("status").textContent = data.count === 0 ? "No problems yet." : `${data.count} problem(s)`;
  } catch (error) {
    $("status").textContent = `Could not load problems: ${error.message}`;
    $("status").classList.add("error");
  }
}

async function loadVersion() {
  try {
    $("version").textContent = (await getJSON("/api/version")).version;
  } catch {
    $("version").textContent = "unknown";
  }
}

async function loadUser() {
  try {
    const me = await getJSON("/api/me/");
    $("user").textContent = me.name || me.email;
    $("user").hidden = false;
    $("logout").hidden = false;
    $("login").hidden = true;
    $("new-problem").hidden = false;
  } catch {
    // 401: not signed in; the "Sign in with Google" link stays visible.
  }
}

$("logout").addEventListener("click", async () => {
  await postJSON("/auth/logout").catch(() => {});
  window.location.reload();
});

$("problem-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  $("form-error").textContent = "";
  try {
    const field = (name) => form.elements.namedItem(name).value;
    await postJSON("/api/problems/", { title: field("title"), statement: field("statement") });
    form.reset();
    await loadProblems();
  } catch (error) {
    $("form-error").textContent = error.message;
  }
});

loadVersion();
loadUser();
loadProblems();

"use strict";
// Log in with JSON (no form post): the session cookie comes back HttpOnly; the page then loads the console.
document.getElementById("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const error = document.getElementById("login-error");
  error.textContent = "";
  const body = JSON.stringify({
    user: document.getElementById("user").value,
    password: document.getElementById("password").value,
  });
  try {
    const resp = await fetch("/login", {method: "POST", body, headers: {"Content-Type": "application/json"},
                                        credentials: "same-origin"});
    if (resp.ok) {
      window.location.assign("/#activities");
      return;
    }
    const data = await resp.json().catch(() => ({}));
    error.textContent = data.error || `login failed (${resp.status})`;
  } catch (e) {
    error.textContent = "the console is unreachable";
  }
});

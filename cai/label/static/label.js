// cai label: the rater's page. Keyboard first; every answer is committed by the server
// before the page moves on; the next pair is already loaded (prefetched), so moving on
// takes no extra round trip. Responses arrive as HTML the server rendered from escaped text
// (see cai/label/markdown.py); text from the data is otherwise only ever set as textContent.
(function () {
  "use strict";

  const api = document.querySelector('meta[name="cai-api"]').content;
  const csrf = document.querySelector('meta[name="cai-csrf"]').content;
  const $ = (id) => document.getElementById(id);
  const form = $("answer-form");
  const reason = $("reason");
  const KEYS = { "1": "left", "2": "right", t: "tie", b: "both_bad", s: "skip" };
  const NAMES = { left: "A is better", right: "B is better", tie: "Tie", both_bad: "Both bad", skip: "Skip" };

  let queue = [];
  let shownAt = 0;
  let busy = false;

  function setState(state) {
    document.body.dataset.state = state;
  }

  function say(text) {
    $("status").textContent = text;
  }

  function alertBox(text) {
    const box = $("alert");
    box.textContent = text || "";
    box.hidden = !text;
  }

  function progress(p) {
    if (!p) return;
    const bar = $("progress");
    bar.setAttribute("aria-valuemax", String(p.total));
    bar.setAttribute("aria-valuenow", String(p.done));
    bar.setAttribute("aria-valuetext", p.done + " of " + p.total + " pairs");
    $("progress-fill").style.width = (p.total ? (100 * p.done) / p.total : 100) + "%";
    $("progress-text").textContent = p.done + " / " + p.total;
  }

  function selected() {
    const checked = form.querySelector('input[name="choice"]:checked');
    return checked ? checked.value : null;
  }

  function pick(value) {
    const input = form.querySelector('input[name="choice"][value="' + value + '"]');
    if (input) input.checked = true;
    markPicked();
  }

  function markPicked() {
    const value = selected();
    $("left").parentElement.classList.toggle("picked", value === "left");
    $("right").parentElement.classList.toggle("picked", value === "right");
  }

  function show(item, restored) {
    alertBox("");
    if (!item) {
      $("pair").hidden = true;
      $("done").hidden = false;
      document.body.dataset.itemId = "";
      setState("done");
      $("done-title").focus();
      return;
    }
    $("done").hidden = true;
    $("pair").hidden = false;
    $("conversation").innerHTML = item.conversation_html;
    $("left").innerHTML = item.left_html;
    $("right").innerHTML = item.right_html;
    $("left").scrollTop = 0;
    $("right").scrollTop = 0;
    $("principle").hidden = !item.principle;
    $("principle-text").textContent = item.principle || "";
    const ai = $("ai-note");
    if (ai) {
      ai.hidden = !item.ai;
      ai.textContent = item.ai
        ? "Audit mode: the AI judge gives A (left) a " + Math.round(item.ai.p_left * 100) +
          "% chance of being the better response."
        : "";
    }
    form.reset();
    if (restored) {
      pick(restored.choice);
      reason.value = restored.reason || "";
    }
    markPicked();
    document.body.dataset.itemId = item.item_id;
    shownAt = performance.now();
    setState("ready");
  }

  function apply(data, restored) {
    queue = data.items || [];
    progress(data.progress);
    $("undo").disabled = !data.can_undo;
    $("undo-done").disabled = !data.can_undo;
    show(queue[0] || null, restored);
  }

  async function call(method, path, body) {
    const options = { method: method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (method === "POST") {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRF-Token"] = csrf;
      options.body = JSON.stringify(body || {});
    }
    const response = await fetch(api + path, options);
    let data = {};
    try {
      data = await response.json();
    } catch (err) {
      data = { message: "The server sent an unreadable reply (" + response.status + ")." };
    }
    return { ok: response.ok, status: response.status, data: data };
  }

  async function load() {
    setState("busy");
    try {
      const res = await call("GET", "/queue");
      if (!res.ok) throw new Error(res.data.message || "cannot load pairs");
      apply(res.data);
      say("");
    } catch (err) {
      setState("error");
      alertBox("Could not load pairs: " + err.message + " Reload the page to try again.");
    }
  }

  async function submit() {
    if (busy || !queue.length) return;
    const choice = selected();
    if (!choice) {
      alertBox("Pick an answer first: 1, 2, t, b or s.");
      return;
    }
    busy = true;
    setState("busy");
    $("submit").disabled = true;
    const current = queue[0];
    const body = {
      item_id: current.item_id,
      choice: choice,
      reason: reason.value,
      seconds: Math.round(performance.now() - shownAt) / 1000,
    };
    try {
      const res = await call("POST", "/answer", body);
      if (res.ok) {
        // Committed: move on to the prefetched pair, refilled by the reply.
        apply(res.data);
        say("Saved: " + NAMES[choice] + ". " + (queue.length ? "Next pair." : ""));
        if (queue.length) $("conversation-title").focus();
      } else if (res.status === 409 && res.data.items) {
        apply(res.data);
        alertBox(res.data.message);
      } else {
        setState("ready");
        alertBox("Not saved: " + (res.data.message || "error " + res.status));
      }
    } catch (err) {
      setState("ready");
      alertBox("Not saved: the server did not answer. Your choice is kept; press Enter to try again.");
    } finally {
      busy = false;
      $("submit").disabled = false;
    }
  }

  async function undo() {
    if (busy) return;
    busy = true;
    setState("busy");
    try {
      const res = await call("POST", "/undo", {});
      if (!res.ok) {
        setState(queue.length ? "ready" : "done");
        alertBox("Could not undo: " + (res.data.message || "error " + res.status));
        return;
      }
      const undone = res.data.undone;
      apply(res.data, undone && res.data.items[0] && res.data.items[0].item_id === undone.item_id ? undone : null);
      say(undone ? "Undone: your previous answer (" + NAMES[undone.choice] + ") is cleared; answer again." : "Nothing to undo.");
      if (undone) $("conversation-title").focus();
    } catch (err) {
      setState(queue.length ? "ready" : "done");
      alertBox("Could not undo: the server did not answer.");
    } finally {
      busy = false;
    }
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    submit();
  });
  form.addEventListener("change", markPicked);
  $("undo").addEventListener("click", undo);
  $("undo-done").addEventListener("click", undo);

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    const typing = target && (target.tagName === "INPUT" && target.type === "text" || target.tagName === "TEXTAREA");
    if (typing) {
      if (event.key === "Escape") target.blur();
      return; // Enter in the reason box submits the form by itself
    }
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (KEYS[key] && !$("pair").hidden) {
      event.preventDefault();
      pick(KEYS[key]);
    } else if (key === "u") {
      event.preventDefault();
      undo();
    } else if (key === "r" && !$("pair").hidden) {
      event.preventDefault();
      reason.focus();
    } else if (key === "Enter" && !(target && (target.tagName === "BUTTON" || target.tagName === "A"))) {
      event.preventDefault(); // also on a radio button, so the form is not submitted twice
      submit();
    }
  });

  $("conversation-title").setAttribute("tabindex", "-1");
  load();
})();

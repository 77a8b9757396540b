// The console's live parts: the queue and a conversation follow /console/events.
// Text is always set with textContent, never as HTML: what members type stays text.
"use strict";

const REASONS = { asked: "主动要求", not_understood: "机器人未能理解", low_rating: "低分评价" };
const STATUSES = { queued: "排队中", assigned: "接待中", closed: "已结束", returned: "已交还机器人" };
const AVAILABILITY = { online: "在线", away: "离开", offline: "离线" };
const MEDIA = { image: "图片", voice: "语音", video: "视频", shortvideo: "小视频" };

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function waited(seconds) {
  const m = Math.floor(seconds / 60), s = seconds % 60;
  return m >= 60 ? `${Math.floor(m / 60)}小时${m % 60}分` : `${m}分${String(s).padStart(2, "0")}秒`;
}

function liveQueue(table) {
  const body = document.getElementById("queue");
  const agents = document.getElementById("agents");
  const template = document.getElementById("claim-form");
  const target = Number(table.dataset.target);
  let rows = [];
  let fetchedAt = Date.now();

  function render() {
    const elapsed = Math.floor((Date.now() - fetchedAt) / 1000);
    body.replaceChildren();
    if (!rows.length) {
      const tr = document.createElement("tr");
      cell(tr, "暂无等待中的会话").colSpan = 7;
      body.appendChild(tr);
    }
    for (const c of rows) {
      const tr = document.createElement("tr");
      tr.dataset.conversation = c.id;
      const wait = c.waiting_seconds + elapsed;
      if (c.status === "queued" && wait > target) tr.className = "overdue";
      const who = cell(tr, "");
      const link = document.createElement("a");
      link.href = `/console/conversations/${c.id}`;
      link.textContent = c.member;
      who.appendChild(link);
      const tier = cell(tr, c.tier);
      if (c.priority) {
        // Why this one is ahead of others waiting longer: its member's tier has the lane.
        const badge = document.createElement("span");
        badge.className = "badge priority";
        badge.textContent = c.priority;
        tier.append(" ", badge);
      }
      cell(tr, REASONS[c.reason] || c.reason);
      cell(tr, STATUSES[c.status] || c.status);
      cell(tr, c.agent || "—");
      cell(tr, waited(wait), "wait");
      const action = cell(tr, "");
      if (c.status === "queued") {
        const form = template.content.firstElementChild.cloneNode(true);
        form.action = `/console/conversations/${c.id}/claim`;
        action.appendChild(form);
      }
      body.appendChild(tr);
    }
  }

  async function refresh() {
    const response = await fetch("/console/api/queue", { credentials: "same-origin" });
    if (!response.ok) return;
    const data = await response.json();
    rows = data.conversations;
    fetchedAt = Date.now();
    agents.replaceChildren(...data.agents.map((a) => {
      const li = document.createElement("li");
      li.className = a.availability;
      li.textContent = `${a.username}（${AVAILABILITY[a.availability] || a.availability}）`;
      return li;
    }));
    render();
  }

  refresh();
  setInterval(render, 1000);
  setInterval(refresh, 30000);
  // Messages change nothing in the queue: refreshing on each would query it once per
  // message per open queue page. On (re)connecting, what happened while the stream was not
  // there (before it first connected, or while it was down) is fetched at once, not at the
  // next half-minute.
  const events = new EventSource("/console/events");
  events.onopen = refresh;
  events.onmessage = (event) => {
    if (JSON.parse(event.data).event !== "message") refresh();
  };
}

function liveConversation(root) {
  const id = Number(root.dataset.liveConversation);
  let last = Number(root.dataset.last);
  const list = document.getElementById("messages");
  const status = document.getElementById("status");
  const windowLine = document.getElementById("window");

  async function refresh() {
    const response = await fetch(`/console/api/conversations/${id}?after=${last}`, {
      credentials: "same-origin",
    });
    if (!response.ok) return;
    const data = await response.json();
    for (const m of data.messages) {
      const li = document.createElement("li");
      li.className = `msg ${m.direction}`;
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = `${m.at} ${m.staff || ""}`;
      const body = document.createElement("span");
      body.className = "body";
      body.textContent = (MEDIA[m.kind] ? `[${MEDIA[m.kind]} ${m.media_id}] ` : "") + m.content;
      li.append(meta, body);
      list.appendChild(li);
      last = Math.max(last, m.id);
    }
    if (data.messages.length) list.scrollTop = list.scrollHeight;
    if (status.dataset.status !== data.status) {
      status.dataset.status = data.status;
      status.textContent = STATUSES[data.status] || data.status;
    }
    if (windowLine && data.window.closes_at) {
      windowLine.textContent = `还可回复 ${data.window.left} 条，窗口 ${data.window.closes_at} 关闭`;
      const send = document.getElementById("send");
      if (send) send.disabled = false;
    }
  }

  // One fetch at a time: each asks for what came after the last message shown, so two at
  // once would both add the same messages.
  let fetching = Promise.resolve();
  const update = () => {
    fetching = fetching.then(refresh, refresh);
  };

  list.scrollTop = list.scrollHeight;
  const events = new EventSource("/console/events");
  events.onopen = update; // what was said while the stream was not there
  events.onmessage = (event) => {
    const data = JSON.parse(event.data);
    if (data.conversation === id) update();
  };
  for (const button of document.querySelectorAll("[data-canned]")) {
    button.addEventListener("click", () => {
      document.getElementById("reply-text").value = button.dataset.canned;
    });
  }
}

function audiencePreview(form) {
  const count = document.getElementById("audience-count");
  const allowance = document.getElementById("audience-allowance");
  const sample = document.getElementById("audience-sample");
  const csrf = form.querySelector("input[name=csrf]").value;
  let timer = null;

  async function refresh() {
    const response = await fetch("/console/api/audience-preview", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf },
      body: new FormData(form),
    });
    const data = await response.json();
    if (!response.ok) {
      count.textContent = data.error || "—";
      return;
    }
    count.textContent = data.count.toLocaleString("zh-CN");
    allowance.textContent = data.with_mass_allowance.toLocaleString("zh-CN");
    sample.replaceChildren(...data.sample.map((m) => {
      const li = document.createElement("li");
      li.textContent = `${m.name}（${m.tier}，${m.points}积分）`;
      return li;
    }));
  }

  const later = () => { clearTimeout(timer); timer = setTimeout(refresh, 300); };
  form.addEventListener("change", later);
  form.addEventListener("input", later);
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  const builder = document.querySelector("[data-audience-preview]");
  if (builder) audiencePreview(builder);
  const queue = document.querySelector("[data-live-queue]");
  if (queue) liveQueue(queue);
  const conversation = document.querySelector("[data-live-conversation]");
  if (conversation) liveConversation(conversation);
});

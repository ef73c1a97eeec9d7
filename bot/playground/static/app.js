/* The playground page: a Slack-like client for the bot running against the local Slack stand-in.
 *
 * It long-polls GET /playground/api/state?user=U&since=N for what the current user sees and renders
 * it with BlockKit; what the person does goes to POST /playground/api/{command,message,action,submit,
 * close,home}, which the server turns into the signed requests Slack would send to the bot.
 */
(function () {
  "use strict";

  var API = "/playground/api/";
  var S = {
    user: null, // the user id the page acts as
    wantedUser: new URLSearchParams(location.search).get("user"),
    target: { kind: "channel", channel: null }, // or {kind: "dm"}
    tab: "messages", // in the bot's DM: "home" or "messages"
    state: null,
    pollGen: 0,
    abort: null,
    nodes: new Map(), // message ts -> {key, node}
    messageForms: new Map(), // message ts and block ids -> its form (ticks, sent with each click on it)
    listChannel: null,
    homeKey: null,
    modalKey: null,
    modalForm: null,
    dismissed: new Set(),
    seen: {}, // channel -> ts of the latest message the person has seen there
  };

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  /* ------------------------------------------------------------------ talking to the server */

  function toast(message, kind) {
    var box = $("toast");
    box.textContent = message;
    box.className = "toast" + (kind ? " toast-" + kind : "");
    box.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(function () {
      box.hidden = true;
    }, 6000);
  }

  function post(path, body) {
    return fetch(API + path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(Object.assign({ user: S.user }, body)),
    })
      .then(function (response) {
        return response.json().then(function (data) {
          if (!response.ok) throw new Error(data.error || "HTTP " + response.status);
          return data;
        });
      })
      .catch(function (error) {
        toast(error.message, "error");
        throw error;
      });
  }

  function setConnected(ok) {
    var node = $("connection");
    node.textContent = ok ? "connected" : "reconnecting…";
    node.classList.toggle("connection-ok", ok);
  }

  function poll() {
    var gen = ++S.pollGen;
    if (S.abort) S.abort.abort();
    var since = null;
    function loop() {
      if (gen !== S.pollGen) return;
      var controller = new AbortController();
      S.abort = controller;
      var url = API + "state?user=" + encodeURIComponent(S.user || "") + (since === null ? "" : "&since=" + since);
      fetch(url, { cache: "no-store", signal: controller.signal })
        .then(function (response) {
          return response.json().then(function (data) {
            if (!response.ok) throw new Error(data.error || "HTTP " + response.status);
            return data;
          });
        })
        .then(function (state) {
          if (gen !== S.pollGen) return;
          setConnected(true);
          since = state.version;
          receive(state);
          loop();
        })
        .catch(function (error) {
          if (gen !== S.pollGen || error.name === "AbortError") return;
          setConnected(false);
          setTimeout(loop, 1000);
        });
    }
    loop();
  }

  function receive(state) {
    var first = S.state === null;
    S.state = state;
    if (S.user === null) S.user = state.me;
    if (first) {
      if (!S.target.channel) S.target.channel = (state.channels[0] || {}).id;
      if (S.wantedUser) {
        var wanted = state.users.filter(function (u) {
          return !u.is_bot && (u.id === S.wantedUser || u.name === S.wantedUser);
        })[0];
        if (wanted && wanted.id !== S.user) {
          switchUser(wanted.id);
          return;
        }
      }
    }
    render();
  }

  /* ------------------------------------------------------------------ lookups */

  function usersById() {
    var map = {};
    (S.state ? S.state.users : []).forEach(function (u) {
      map[u.id] = u;
    });
    return map;
  }

  function channelNames() {
    var map = {};
    (S.state ? S.state.channels : []).forEach(function (c) {
      map[c.id] = c.name;
    });
    return map;
  }

  function currentChannel() {
    return S.target.kind === "dm" ? "D" + S.user : S.target.channel;
  }

  function mrkdwnContext() {
    return { users: usersById(), channels: channelNames(), me: S.user, files: S.state.files };
  }

  function me() {
    return usersById()[S.user] || { name: "?" };
  }

  /* ------------------------------------------------------------------ sidebar and header */

  function latestTs(channel) {
    var list = S.state.messages[channel] || [];
    return list.length ? list[list.length - 1].ts : "";
  }

  function unread(channel) {
    if (channel === currentChannel() && !(S.target.kind === "dm" && S.tab === "home")) {
      S.seen[channel] = latestTs(channel);
      return 0;
    }
    if (S.seen[channel] === undefined) S.seen[channel] = latestTs(channel);
    return (S.state.messages[channel] || []).filter(function (m) {
      return m.ts > S.seen[channel] && m.user !== S.user;
    }).length;
  }

  function badge(node, count) {
    var old = node.querySelector(".nav-unread");
    if (old) old.remove();
    node.classList.toggle("nav-has-unread", count > 0);
    if (count > 0) node.appendChild(el("span", "nav-unread", String(count)));
  }

  function renderSidebar() {
    var select = $("user-select");
    var people = S.state.users.filter(function (u) {
      return !u.is_bot;
    });
    var signature = JSON.stringify(people);
    if (select.dataset.signature !== signature) {
      select.textContent = "";
      people.forEach(function (u) {
        var option = el("option", null, u.name + (u.is_admin ? " (admin)" : "") + " — " + u.real_name);
        option.value = u.id;
        select.appendChild(option);
      });
      select.dataset.signature = signature;
    }
    select.value = S.user;

    var list = $("channel-list");
    list.textContent = "";
    S.state.channels
      .filter(function (c) {
        return c.type === "channel";
      })
      .forEach(function (c) {
        var item = el("button", "nav-item");
        item.type = "button";
        item.dataset.channel = c.id;
        item.appendChild(el("span", "nav-hash", "#"));
        item.appendChild(el("span", null, c.name));
        if (S.target.kind === "channel" && S.target.channel === c.id) item.classList.add("active");
        badge(item, unread(c.id));
        item.addEventListener("click", function () {
          go({ kind: "channel", channel: c.id });
        });
        list.appendChild(item);
      });
    $("nav-bot").classList.toggle("active", S.target.kind === "dm");
    badge($("nav-bot"), unread("D" + S.user));
  }

  function renderHeader() {
    var title = $("conv-title");
    title.textContent = "";
    if (S.target.kind === "dm") {
      title.appendChild(el("span", "nav-bot-icon", "L"));
      title.appendChild(el("span", null, "labelbot"));
      title.appendChild(el("span", "badge", "APP"));
    } else {
      title.textContent = "# " + (channelNames()[S.target.channel] || "");
    }
    $("tabs").hidden = S.target.kind !== "dm";
    $("tab-home").classList.toggle("active", S.tab === "home");
    $("tab-messages").classList.toggle("active", S.tab === "messages");
    $("tab-home").setAttribute("aria-selected", String(S.tab === "home"));
    $("tab-messages").setAttribute("aria-selected", String(S.tab === "messages"));
    var homeShown = S.target.kind === "dm" && S.tab === "home";
    $("home").hidden = !homeShown;
    $("messages").hidden = homeShown;
    $("composer").hidden = homeShown;
    var input = $("composer-input");
    input.placeholder =
      S.target.kind === "dm" ? "Message labelbot — try /label next" : "Message #" + (channelNames()[S.target.channel] || "") + " — try /label next";
  }

  /* ------------------------------------------------------------------ messages */

  function avatar(user) {
    var box = el("div", "avatar");
    if (!user || user.is_bot) {
      box.classList.add("avatar-bot");
      box.textContent = "L";
      return box;
    }
    var hue = 0;
    for (var i = 0; i < user.id.length; i += 1) hue = (hue * 31 + user.id.charCodeAt(i)) % 360;
    box.style.backgroundColor = "hsl(" + hue + ", 45%, 45%)";
    box.textContent = (user.real_name || user.name || "?").charAt(0).toUpperCase();
    return box;
  }

  function eyeIcon() {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 20 20");
    svg.setAttribute("class", "eph-eye");
    svg.setAttribute("aria-hidden", "true");
    var outline = document.createElementNS(ns, "path");
    outline.setAttribute("d", "M1.5 10S4.8 4 10 4s8.5 6 8.5 6-3.3 6-8.5 6-8.5-6-8.5-6z");
    var pupil = document.createElementNS(ns, "circle");
    pupil.setAttribute("cx", "10");
    pupil.setAttribute("cy", "10");
    pupil.setAttribute("r", "2.6");
    svg.appendChild(outline);
    svg.appendChild(pupil);
    return svg;
  }

  function timeText(seconds) {
    if (!seconds) return "";
    return new Date(seconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function messageFiles(message) {
    var box = el("div", "files");
    (message.files || []).forEach(function (f) {
      var file = S.state.files[f.id] || f;
      var url = file.url;
      if ((file.mimetype || "").indexOf("image/") === 0 && url) {
        var figure = el("figure", "file-image");
        figure.appendChild(el("figcaption", "file-title", file.title || file.name));
        var link = el("a");
        link.href = url;
        link.target = "_blank";
        link.rel = "noopener noreferrer";
        var img = el("img");
        img.src = url;
        img.alt = file.title || file.name || "uploaded image";
        link.appendChild(img);
        figure.appendChild(link);
        box.appendChild(figure);
      } else {
        var card = el("a", "file-card");
        if (url) card.href = url;
        card.setAttribute("download", file.name || "");
        card.appendChild(el("span", "file-icon", (file.name || "").split(".").pop().toUpperCase().slice(0, 4) || "FILE"));
        var meta = el("span", "file-meta");
        meta.appendChild(el("span", "file-name", file.title || file.name));
        meta.appendChild(el("span", "file-size", file.size ? Math.ceil(file.size / 1024) + " kB" : ""));
        card.appendChild(meta);
        box.appendChild(card);
      }
    });
    return box;
  }

  function buildMessage(message, compact) {
    var users = usersById();
    var author = users[message.user] || { id: message.user, name: message.user, is_bot: Boolean(message.bot_id) };
    // Ephemeral messages come from the app; their "user" is the one person who sees them.
    var isBot = Boolean(message.bot_id) || author.is_bot || Boolean(message.ephemeral);
    var node = el("div", "msg");
    node.dataset.ts = message.ts;
    node.dataset.user = message.user || "";
    if (message.ephemeral) node.classList.add("msg-ephemeral");
    if (compact) node.classList.add("msg-compact");
    var gutter = el("div", "msg-gutter");
    if (compact) gutter.appendChild(el("span", "msg-time msg-time-hover", timeText(message.time)));
    else gutter.appendChild(avatar(isBot ? null : author));
    node.appendChild(gutter);
    var body = el("div", "msg-body");
    if (!compact) {
      var head = el("div", "msg-head");
      head.appendChild(el("span", "msg-author", isBot ? "labelbot" : author.real_name || author.name));
      if (isBot) head.appendChild(el("span", "badge", "APP"));
      head.appendChild(el("span", "msg-time", timeText(message.time)));
      body.appendChild(head);
    }
    if (message.ephemeral) {
      var note = el("div", "eph-note");
      note.appendChild(eyeIcon());
      note.appendChild(el("span", null, "Only visible to you"));
      var dismiss = el("button", "eph-dismiss", "Dismiss message");
      dismiss.type = "button";
      dismiss.addEventListener("click", function () {
        S.dismissed.add(message.ts);
        renderMessages(true);
      });
      note.appendChild(dismiss);
      body.appendChild(note);
    }
    var ctx = mrkdwnContext();
    // A message updated in place with new block ids (a card re-rendered) starts a fresh form.
    var formKey = message.ts + " " + (message.blocks || []).map(function (b) { return b.block_id || ""; }).join(" ");
    if (!S.messageForms.has(formKey)) S.messageForms.set(formKey, BlockKit.initialForm(message.blocks));
    var form = S.messageForms.get(formKey);
    ctx.form = form;
    ctx.onAction = function (detail, control) {
      // As Slack does, every click on a message carries its checkboxes and menus as they stand.
      act(Object.assign({ channel: message.channel, ts: message.ts, values: BlockKit.formValues(form) }, detail),
        control);
    };
    if (message.blocks && message.blocks.length) {
      body.appendChild(BlockKit.render(message.blocks, ctx));
    } else if (message.text) {
      var text = el("div", "msg-text mrkdwn");
      text.appendChild(Mrkdwn.render(message.text, ctx));
      body.appendChild(text);
    }
    (message.attachments || []).forEach(function (attachment) {
      var box = el("div", "attachment");
      if (attachment.color) box.style.borderLeftColor = /^#?[0-9a-f]{3,6}$/i.test(attachment.color) ? (attachment.color.charAt(0) === "#" ? "" : "#") + attachment.color : "";
      if (attachment.blocks) box.appendChild(BlockKit.render(attachment.blocks, ctx));
      else if (attachment.text || attachment.fallback) box.appendChild(Mrkdwn.render(attachment.text || attachment.fallback, ctx));
      body.appendChild(box);
    });
    if (message.files && message.files.length) body.appendChild(messageFiles(message));
    node.appendChild(body);
    return node;
  }

  function renderMessages(force) {
    var container = $("messages");
    var channel = currentChannel();
    if (S.listChannel !== channel || force) {
      container.textContent = "";
      S.nodes = new Map();
      S.listChannel = channel;
    }
    var list = (S.state.messages[channel] || []).filter(function (m) {
      return !S.dismissed.has(m.ts);
    });
    var atBottom = container.scrollTop + container.clientHeight >= container.scrollHeight - 60;
    var seen = new Set();
    var previous = null;
    var prevNode = null;
    var extra = JSON.stringify([S.state.users, S.state.files]);
    if (!list.length && !container.querySelector(".empty")) {
      container.textContent = "";
      S.nodes = new Map();
      var empty = el("div", "empty");
      empty.appendChild(el("div", "empty-title", S.target.kind === "dm" ? "This is your direct message with labelbot" : "This is the very beginning of #" + (channelNames()[channel] || "")));
      empty.appendChild(el("div", "empty-text", "Type /label next below to get a record to label, or /label help for everything labelbot does."));
      container.appendChild(empty);
      return;
    }
    if (list.length) {
      var emptyNode = container.querySelector(".empty");
      if (emptyNode) emptyNode.remove();
    }
    list.forEach(function (message) {
      var compact =
        previous !== null &&
        !message.ephemeral &&
        !previous.ephemeral &&
        previous.user === message.user &&
        message.time && previous.time && message.time - previous.time < 300;
      var key = JSON.stringify([message, compact, extra]);
      var cached = S.nodes.get(message.ts);
      var node;
      if (cached && cached.key === key) {
        node = cached.node;
      } else {
        node = buildMessage(message, compact);
        if (cached) cached.node.replaceWith(node);
        S.nodes.set(message.ts, { key: key, node: node });
      }
      var wantedPlace = prevNode ? prevNode.nextSibling : container.firstChild;
      if (node !== wantedPlace) container.insertBefore(node, wantedPlace);
      seen.add(message.ts);
      previous = message;
      prevNode = node;
    });
    S.nodes.forEach(function (entry, ts) {
      if (!seen.has(ts)) {
        entry.node.remove();
        S.nodes.delete(ts);
      }
    });
    if (atBottom) container.scrollTop = container.scrollHeight;
  }

  /* ------------------------------------------------------------------ home, modals */

  function renderHome() {
    var box = $("home");
    var view = S.state.home;
    var key = JSON.stringify([view, S.state.users]);
    if (key === S.homeKey) return;
    S.homeKey = key;
    box.textContent = "";
    if (!view) {
      box.appendChild(el("div", "empty-text", "Loading the Home tab…"));
      return;
    }
    var ctx = mrkdwnContext();
    ctx.onAction = function (detail, control) {
      act(Object.assign({ view_id: view.id }, detail), control);
    };
    box.appendChild(BlockKit.render(view.blocks, ctx));
  }

  function closeModal(view) {
    post("close", { view_id: view.id }).catch(function () {});
  }

  function renderModal() {
    var layer = $("modal-layer");
    var stack = S.state.modals || [];
    var view = stack[stack.length - 1];
    var key = view ? view.id + "|" + view.hash : null;
    if (key === S.modalKey) return;
    var sameView = view && S.modalKey && S.modalKey.split("|")[0] === view.id;
    S.modalKey = key;
    layer.textContent = "";
    if (!view) {
      layer.hidden = true;
      S.modalForm = null;
      return;
    }
    // A views.update keeps what was entered in inputs that are still there, as Slack does.
    var form = BlockKit.initialForm(view.blocks);
    if (sameView && S.modalForm) {
      S.modalForm.forEach(function (value, k) {
        form.set(k, value);
      });
    }
    S.modalForm = form;

    var dialog = el("div", "modal");
    dialog.setAttribute("role", "dialog");
    dialog.setAttribute("aria-modal", "true");
    dialog.setAttribute("aria-labelledby", "modal-title");
    dialog.dataset.viewId = view.id;
    var head = el("div", "modal-head");
    if (stack.length > 1) {
      var back = el("button", "modal-back", "\u2190");
      back.type = "button";
      back.setAttribute("aria-label", "Back");
      back.addEventListener("click", function () {
        closeModal(view);
      });
      head.appendChild(back);
    }
    var title = el("h2", "modal-title", view.title ? view.title.text : "");
    title.id = "modal-title";
    head.appendChild(title);
    var x = el("button", "modal-x", "\u00D7");
    x.type = "button";
    x.setAttribute("aria-label", "Close");
    x.addEventListener("click", function () {
      closeModal(view);
    });
    head.appendChild(x);
    dialog.appendChild(head);

    var ctx = mrkdwnContext();
    ctx.form = form;
    ctx.onAction = function (detail, control) {
      act(Object.assign({ view_id: view.id, values: BlockKit.formValues(form) }, detail), control);
    };
    var body = el("div", "modal-body");
    body.appendChild(BlockKit.render(view.blocks, ctx));
    dialog.appendChild(body);
    var problem = el("div", "modal-problem");
    problem.setAttribute("role", "alert");
    problem.hidden = true;
    dialog.appendChild(problem);

    var foot = el("div", "modal-foot");
    var cancel = el("button", "bk-button", view.close ? view.close.text : "Cancel");
    cancel.type = "button";
    cancel.addEventListener("click", function () {
      closeModal(view);
    });
    foot.appendChild(cancel);
    if (view.submit) {
      var submit = el("button", "bk-button bk-primary modal-submit", view.submit.text);
      submit.type = "button";
      submit.addEventListener("click", function () {
        submit.disabled = true;
        problem.hidden = true;
        post("submit", { view_id: view.id, values: BlockKit.formValues(form) })
          .then(function (result) {
            if (!result.ok) {
              BlockKit.showErrors(body, result.errors || {});
              if (result.error) {
                problem.textContent = result.error;
                problem.hidden = false;
              }
              var firstError = body.querySelector(".bk-has-error");
              if (firstError) firstError.scrollIntoView({ block: "nearest" });
            }
          })
          .catch(function () {})
          .then(function () {
            submit.disabled = false;
          });
      });
      foot.appendChild(submit);
    }
    dialog.appendChild(foot);
    layer.appendChild(dialog);
    layer.hidden = false;
    if (!sameView) {
      var focusable = dialog.querySelector("input, select, textarea, .modal-submit");
      if (focusable) focusable.focus();
    }
  }

  /* ------------------------------------------------------------------ actions */

  function act(detail, control) {
    if (control) {
      control.disabled = true;
      control.classList.add("bk-pending");
    }
    post("action", detail)
      .catch(function () {})
      .then(function () {
        if (control) {
          control.disabled = false;
          control.classList.remove("bk-pending");
        }
      });
  }

  function send(text) {
    var trimmed = text.trim();
    if (!trimmed) return Promise.resolve();
    var path = trimmed.charAt(0) === "/" ? "command" : "message";
    return post(path, { channel: currentChannel(), text: trimmed }).then(function () {
      $("composer-input").value = "";
    });
  }

  function go(target) {
    S.target = target;
    if (target.kind === "dm" && S.tab === "home") post("home", {}).catch(function () {});
    render();
    if (!(target.kind === "dm" && S.tab === "home")) $("composer-input").focus();
  }

  function switchUser(userId) {
    S.user = userId;
    S.nodes = new Map();
    S.messageForms = new Map(); // ticks are each person's own
    S.listChannel = null;
    S.homeKey = null;
    S.modalKey = null;
    S.modalForm = null;
    S.dismissed = new Set();
    S.seen = {};
    var name = (usersById()[userId] || {}).name || userId;
    history.replaceState(null, "", "?user=" + encodeURIComponent(name));
    if (S.target.kind === "dm" && S.tab === "home") post("home", {}).catch(function () {});
    if (S.state) render();
    poll();
  }

  function render() {
    if (!S.state) return;
    document.body.dataset.user = S.user;
    document.body.dataset.version = String(S.state.version);
    renderSidebar();
    renderHeader();
    if (S.target.kind === "dm" && S.tab === "home") renderHome();
    else renderMessages(false);
    renderModal();
  }

  /* ------------------------------------------------------------------ wiring */

  $("user-select").addEventListener("change", function (event) {
    switchUser(event.target.value);
  });
  $("nav-bot").addEventListener("click", function () {
    go({ kind: "dm" });
  });
  ["home", "messages"].forEach(function (tab) {
    $("tab-" + tab).addEventListener("click", function () {
      S.tab = tab;
      go({ kind: "dm" });
    });
  });
  $("composer").addEventListener("submit", function (event) {
    event.preventDefault();
    send($("composer-input").value).catch(function () {});
  });
  Array.prototype.forEach.call(document.querySelectorAll(".hint"), function (hint) {
    hint.addEventListener("click", function () {
      if (hint.dataset.fill) {
        // A search needs words of one's own: fill the box instead of sending.
        $("composer-input").value = hint.dataset.text;
        $("composer-input").focus();
        return;
      }
      send(hint.dataset.text).catch(function () {});
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && S.state && S.state.modals && S.state.modals.length) {
      closeModal(S.state.modals[S.state.modals.length - 1]);
    }
  });

  poll();
})();

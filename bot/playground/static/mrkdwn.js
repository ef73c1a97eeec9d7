/* Slack mrkdwn -> DOM nodes, built with createElement/textContent only: no string ever becomes HTML.
 *
 * Handles what the bot sends: *bold*, _italic_, ~strike~, `code`, ```pre```, "> " quotes, line breaks,
 * <@U123> / <@U123|name> mentions, <#C123|name> channels, <!here>, <https://url|label> links (http,
 * https and mailto only) and the three entities Slack escapes (&amp; &lt; &gt;), shown as text.
 * Anything else in angle brackets is shown literally.
 */
(function (global) {
  "use strict";

  var ENTITY_RE = /&(amp|lt|gt);/g;
  var ENTITIES = { amp: "&", lt: "<", gt: ">" };
  // Earliest match wins; the flanking rules follow Slack's: no formatting inside words (card_arrival).
  var INLINE_RE = new RegExp(
    [
      "`([^`\\n]+)`",
      "<([^<>\\n]*)>",
      "(?<![\\p{L}\\p{N}_*])\\*(?=\\S)([^*\\n]*?\\S)\\*(?![\\p{L}\\p{N}_*])",
      "(?<![\\p{L}\\p{N}_])_(?=\\S)([^_\\n]*?\\S)_(?![\\p{L}\\p{N}_])",
      "(?<![\\p{L}\\p{N}_~])~(?=\\S)([^~\\n]*?\\S)~(?![\\p{L}\\p{N}_~])",
    ].join("|"),
    "gu"
  );
  var SAFE_PROTOCOLS = { "http:": true, "https:": true, "mailto:": true };

  function decode(text) {
    return String(text).replace(ENTITY_RE, function (_, name) {
      return ENTITIES[name];
    });
  }

  function el(tag, className) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    return node;
  }

  /* Text with line breaks as <br> elements. */
  function appendText(parent, text) {
    var lines = decode(text).split("\n");
    lines.forEach(function (line, i) {
      if (i > 0) parent.appendChild(el("br"));
      if (line) parent.appendChild(document.createTextNode(line));
    });
  }

  function safeUrl(raw) {
    try {
      var url = new URL(raw);
      return SAFE_PROTOCOLS[url.protocol] ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  function userName(ctx, id) {
    var users = (ctx && ctx.users) || {};
    return users[id] ? users[id].name : id;
  }

  function appendAngle(parent, inner, ctx) {
    var bar = inner.indexOf("|");
    var target = bar >= 0 ? inner.slice(0, bar) : inner;
    var label = bar >= 0 ? inner.slice(bar + 1) : "";
    var node;
    if (target.charAt(0) === "@") {
      var id = target.slice(1);
      node = el("span", "mention");
      if (ctx && ctx.me === id) node.classList.add("mention-me");
      node.textContent = "@" + (label ? decode(label).replace(/^@/, "") : userName(ctx, id));
    } else if (target.charAt(0) === "#") {
      node = el("span", "mention channel-mention");
      var channels = (ctx && ctx.channels) || {};
      node.textContent = "#" + (label ? decode(label) : channels[target.slice(1)] || target.slice(1));
    } else if (target.charAt(0) === "!") {
      node = el("span", "mention");
      var special = target.slice(1).split("^")[0];
      node.textContent = label ? decode(label) : "@" + special;
    } else {
      var href = safeUrl(decode(target));
      if (href === null) {
        parent.appendChild(document.createTextNode("<" + decode(inner) + ">"));
        return;
      }
      node = el("a", "link");
      node.href = href;
      node.target = "_blank";
      node.rel = "noopener noreferrer";
      node.textContent = label ? decode(label) : decode(target);
    }
    parent.appendChild(node);
  }

  function appendInline(parent, text, ctx) {
    var last = 0;
    var match;
    var re = new RegExp(INLINE_RE.source, INLINE_RE.flags); // own lastIndex: this recurses
    while ((match = re.exec(text)) !== null) {
      if (match.index > last) appendText(parent, text.slice(last, match.index));
      if (match[1] !== undefined) {
        var code = el("code");
        code.textContent = decode(match[1]);
        parent.appendChild(code);
      } else if (match[2] !== undefined) {
        appendAngle(parent, match[2], ctx);
      } else {
        var tag = match[3] !== undefined ? "b" : match[4] !== undefined ? "i" : "s";
        var styled = el(tag);
        appendInline(styled, match[3] !== undefined ? match[3] : match[4] !== undefined ? match[4] : match[5], ctx);
        parent.appendChild(styled);
      }
      last = re.lastIndex;
    }
    if (last < text.length) appendText(parent, text.slice(last));
  }

  /* Lines starting with ">" become one blockquote per run; the rest stays inline. */
  function appendLines(parent, text, ctx) {
    var lines = text.split("\n");
    var i = 0;
    while (i < lines.length) {
      var run = [];
      var quoted = lines[i].charAt(0) === ">";
      while (i < lines.length && (lines[i].charAt(0) === ">") === quoted) {
        run.push(quoted ? lines[i].slice(1).replace(/^ /, "") : lines[i]);
        i += 1;
      }
      var box = el(quoted ? "blockquote" : "span", quoted ? "quote" : null);
      appendInline(box, run.join("\n"), ctx);
      parent.appendChild(box);
    }
  }

  /* mrkdwn text -> DocumentFragment. ctx: {users: {id: {name}}, channels: {id: name}, me: userId}. */
  function render(text, ctx) {
    var fragment = document.createDocumentFragment();
    var parts = String(text == null ? "" : text).split("```");
    if (parts.length % 2 === 0) {
      // An unclosed fence is plain text, as in Slack.
      var tail = parts.pop();
      parts[parts.length - 1] += "```" + tail;
    }
    parts.forEach(function (part, i) {
      if (i % 2 === 1) {
        var pre = el("pre", "pre");
        pre.textContent = decode(part.replace(/^\n/, ""));
        fragment.appendChild(pre);
      } else if (part) {
        appendLines(fragment, part, ctx);
      }
    });
    return fragment;
  }

  /* Plain text objects: entities are not special there, the text is shown as given. */
  function renderPlain(text) {
    var fragment = document.createDocumentFragment();
    String(text == null ? "" : text).split("\n").forEach(function (line, i) {
      if (i > 0) fragment.appendChild(el("br"));
      if (line) fragment.appendChild(document.createTextNode(line));
    });
    return fragment;
  }

  global.Mrkdwn = { render: render, renderPlain: renderPlain, decode: decode, safeUrl: safeUrl };
})(window);

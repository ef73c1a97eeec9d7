/* Block Kit -> DOM, for messages, modals and the App Home. Text goes through Mrkdwn (mrkdwn) or
 * textContent (plain_text); nothing is ever parsed as HTML.
 *
 * BlockKit.render(blocks, ctx) returns an element. ctx:
 *   users, channels, me        for mentions (see Mrkdwn.render)
 *   files                      {file_id: {url, ...}} for image blocks with slack_file
 *   onAction(detail, control)  a button click or a select pick outside input blocks:
 *                              detail = {block_id, action_id, value | selected_value}
 *   form                       Map JSON [block_id, action_id] -> value(s) of input blocks (modals), and
 *                              of checkboxes and multi-selects in actions blocks (a message's state)
 *   errors                     {block_id: message} shown under the blocks (response_action: errors)
 */
(function (global) {
  "use strict";

  var Mrkdwn = global.Mrkdwn;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function textObject(obj, ctx, className) {
    var box = el("span", className || "bk-text");
    if (!obj) return box;
    if (obj.type === "mrkdwn") {
      box.classList.add("mrkdwn");
      box.appendChild(Mrkdwn.render(obj.text, ctx));
    } else {
      box.appendChild(Mrkdwn.renderPlain(obj.text));
    }
    return box;
  }

  function plain(obj) {
    return obj && typeof obj.text === "string" ? obj.text : "";
  }

  function allOptions(element) {
    var options = (element.options || []).slice();
    (element.option_groups || []).forEach(function (group) {
      options = options.concat(group.options || []);
    });
    return options;
  }

  function formKey(blockId, actionId) {
    return JSON.stringify([blockId, actionId]);
  }

  function imageSource(obj, ctx) {
    if (obj.slack_file) {
      var file = obj.slack_file.id && ctx.files ? ctx.files[obj.slack_file.id] : null;
      if (file) return file.url;
      var wanted = obj.slack_file.url;
      if (!wanted) return null;
      // A Slack file URL of a file uploaded here: load it from the playground instead.
      var known = Object.keys(ctx.files || {}).map(function (id) { return ctx.files[id]; }).filter(function (f) {
        return (f.slack_urls || []).indexOf(wanted) >= 0;
      })[0];
      return known ? known.url : Mrkdwn.safeUrl(wanted);
    }
    var url = obj.image_url || "";
    if (url.charAt(0) === "/") return url; // a file served by the playground itself
    if (/^data:image\/(png|jpeg|gif|webp);base64,/i.test(url)) return url;
    return Mrkdwn.safeUrl(url);
  }

  function image(obj, ctx, className) {
    var src = imageSource(obj, ctx);
    if (!src) {
      return el("span", "bk-missing", "[image: " + (obj.alt_text || "unavailable") + "]");
    }
    var img = el("img", className);
    img.src = src;
    img.alt = obj.alt_text || "";
    img.loading = "lazy";
    return img;
  }

  /* ------------------------------------------------------------------ interactive elements */

  function button(element, blockId, ctx) {
    var node = el("button", "bk-button");
    node.type = "button";
    if (element.style === "primary") node.classList.add("bk-primary");
    if (element.style === "danger") node.classList.add("bk-danger");
    node.textContent = plain(element.text);
    node.dataset.actionId = element.action_id || "";
    if (element.value !== undefined) node.dataset.value = element.value;
    node.addEventListener("click", function () {
      if (element.url) {
        var href = Mrkdwn.safeUrl(element.url);
        if (href) global.open(href, "_blank", "noopener,noreferrer");
      }
      if (ctx.onAction) {
        ctx.onAction({ block_id: blockId, action_id: element.action_id, value: element.value }, node);
      }
    });
    return node;
  }

  function optionNode(option) {
    var node = el("option", null, plain(option.text));
    node.value = option.value;
    if (option.description) node.title = plain(option.description);
    return node;
  }

  function fillSelect(select, element, placeholder) {
    if (placeholder !== null) {
      var first = el("option", "bk-placeholder", placeholder);
      first.value = "";
      first.disabled = true;
      select.appendChild(first);
    }
    (element.options || []).forEach(function (option) {
      select.appendChild(optionNode(option));
    });
    (element.option_groups || []).forEach(function (group) {
      var node = el("optgroup");
      node.label = plain(group.label);
      (group.options || []).forEach(function (option) {
        node.appendChild(optionNode(option));
      });
      select.appendChild(node);
    });
  }

  /* A select outside an input block: picking fires the action at once, as in Slack. */
  function actionSelect(element, blockId, ctx) {
    var select = el("select", "bk-select");
    select.dataset.actionId = element.action_id || "";
    select.setAttribute("aria-label", plain(element.placeholder) || "Choose an option");
    fillSelect(select, element, plain(element.placeholder) || "Select an item");
    var initial = element.initial_option ? element.initial_option.value : "";
    select.value = initial;
    select.addEventListener("change", function () {
      var chosen = select.value;
      if (ctx.onAction && chosen !== "") {
        ctx.onAction({ block_id: blockId, action_id: element.action_id, selected_value: chosen }, select);
      }
    });
    return select;
  }

  /* Checkboxes or radio buttons; ``fire``: outside an input block, where Slack sends each tick. */
  function choiceList(element, blockId, ctx, kind, fire) {
    var box = el("div", "bk-choices");
    var key = formKey(blockId, element.action_id);
    var current = ctx.form.get(key);
    var selected = Array.isArray(current) ? current : current ? [current] : [];
    (element.options || []).forEach(function (option, i) {
      var row = el("label", "bk-choice");
      var input = el("input");
      input.type = kind;
      input.name = key;
      input.value = option.value;
      input.checked = selected.indexOf(option.value) >= 0;
      input.dataset.actionId = element.action_id || "";
      input.addEventListener("change", function () {
        var ticked = Array.prototype.filter
          .call(box.querySelectorAll("input"), function (node) { return node.checked; })
          .map(function (node) { return node.value; });
        ctx.form.set(key, kind === "checkbox" ? ticked : ticked[0] || null);
        if (fire && ctx.onAction) ctx.onAction({ block_id: blockId, action_id: element.action_id }, input);
      });
      var label = el("span", "bk-choice-text");
      label.appendChild(textObject(option.text, ctx));
      if (option.description) label.appendChild(textObject(option.description, ctx, "bk-choice-desc"));
      row.appendChild(input);
      row.appendChild(label);
      row.dataset.index = String(i);
      box.appendChild(row);
    });
    return box;
  }

  /* A multi-select outside an input block: each change goes to ctx.form and fires the action. */
  function actionMultiSelect(element, blockId, ctx) {
    var key = formKey(blockId, element.action_id);
    var select = el("select", "bk-select");
    select.multiple = true;
    select.dataset.actionId = element.action_id || "";
    select.setAttribute("aria-label", plain(element.placeholder) || "Choose options");
    fillSelect(select, element, null);
    var current = ctx.form.get(key) || [];
    Array.prototype.forEach.call(select.options, function (option) {
      option.selected = current.indexOf(option.value) >= 0;
    });
    select.addEventListener("change", function () {
      var chosen = Array.prototype.filter
        .call(select.options, function (option) { return option.selected; })
        .map(function (option) { return option.value; });
      ctx.form.set(key, chosen);
      if (ctx.onAction) ctx.onAction({ block_id: blockId, action_id: element.action_id }, null);
    });
    return select;
  }

  /* An element inside an input block: its value goes to ctx.form, sent on submit. */
  function inputElement(element, blockId, ctx) {
    var key = formKey(blockId, element.action_id);
    var type = element.type;
    if (type === "checkboxes") return choiceList(element, blockId, ctx, "checkbox");
    if (type === "radio_buttons") return choiceList(element, blockId, ctx, "radio");
    if (type === "static_select" || type === "multi_static_select") {
      var multi = type === "multi_static_select";
      var select = el("select", "bk-select bk-input-select");
      select.multiple = multi;
      select.dataset.actionId = element.action_id || "";
      fillSelect(select, element, multi ? null : plain(element.placeholder) || "Select an item");
      var current = ctx.form.get(key);
      Array.prototype.forEach.call(select.options, function (option) {
        option.selected = multi ? (current || []).indexOf(option.value) >= 0 : option.value === (current || "");
      });
      select.addEventListener("change", function () {
        var chosen = Array.prototype.filter
          .call(select.options, function (option) { return option.selected && option.value !== ""; })
          .map(function (option) { return option.value; });
        ctx.form.set(key, multi ? chosen : chosen[0] || null);
      });
      return select;
    }
    if (type === "plain_text_input") {
      var input = el(element.multiline ? "textarea" : "input", "bk-text-input");
      if (!element.multiline) input.type = "text";
      input.placeholder = plain(element.placeholder);
      input.value = ctx.form.get(key) || "";
      input.dataset.actionId = element.action_id || "";
      input.addEventListener("input", function () {
        ctx.form.set(key, input.value);
      });
      return input;
    }
    return el("span", "bk-missing", "[unsupported input: " + type + "]");
  }

  /* An element of an actions block or a section accessory. */
  function element(element, blockId, ctx) {
    switch (element.type) {
      case "button":
        return button(element, blockId, ctx);
      case "static_select":
      case "overflow":
        return actionSelect(element, blockId, ctx);
      case "image":
        return image(element, ctx, "bk-accessory-image");
      case "multi_static_select":
        return actionMultiSelect(element, blockId, ctx);
      case "checkboxes":
      case "radio_buttons":
        return choiceList(element, blockId, ctx, element.type === "checkboxes" ? "checkbox" : "radio", true);
      default:
        return el("span", "bk-missing", "[unsupported element: " + element.type + "]");
    }
  }

  /* ------------------------------------------------------------------ blocks */

  function block(b, ctx) {
    var node;
    var id = b.block_id || "";
    switch (b.type) {
      case "header":
        node = el("div", "bk-header", plain(b.text));
        break;
      case "section":
        node = el("div", "bk-section");
        var main = el("div", "bk-section-main");
        if (b.text) main.appendChild(textObject(b.text, ctx));
        if (b.fields) {
          var fields = el("div", "bk-fields");
          b.fields.forEach(function (field) {
            fields.appendChild(textObject(field, ctx, "bk-field"));
          });
          main.appendChild(fields);
        }
        node.appendChild(main);
        if (b.accessory) {
          var accessory = el("div", "bk-accessory");
          accessory.appendChild(element(b.accessory, id, ctx));
          node.appendChild(accessory);
        }
        break;
      case "context":
        node = el("div", "bk-context");
        (b.elements || []).forEach(function (item) {
          node.appendChild(item.type === "image" ? image(item, ctx, "bk-context-image") : textObject(item, ctx));
        });
        break;
      case "divider":
        node = el("hr", "bk-divider");
        break;
      case "image":
        node = el("figure", "bk-image");
        if (b.title) node.appendChild(el("figcaption", "bk-image-title", plain(b.title)));
        var img = image(b, ctx, "bk-image-img");
        if (img.tagName === "IMG") {
          var link = el("a");
          link.href = img.src;
          link.target = "_blank";
          link.rel = "noopener noreferrer";
          link.appendChild(img);
          node.appendChild(link);
        } else {
          node.appendChild(img);
        }
        break;
      case "actions":
        node = el("div", "bk-actions");
        (b.elements || []).forEach(function (item) {
          node.appendChild(element(item, id, ctx));
        });
        break;
      case "input":
        node = el("div", "bk-input");
        var label = el("label", "bk-input-label", plain(b.label));
        if (b.optional) label.appendChild(el("span", "bk-optional", " (optional)"));
        node.appendChild(label);
        if (b.element) {
          var control = inputElement(b.element, id, ctx);
          if (control.classList.contains("bk-choices")) control.setAttribute("role", "group");
          control.setAttribute("aria-label", plain(b.label));
          node.appendChild(control);
        }
        if (b.hint) node.appendChild(el("div", "bk-hint", plain(b.hint)));
        break;
      default:
        node = el("div", "bk-missing", "[" + b.type + " block]");
    }
    node.classList.add("bk-block");
    node.dataset.blockId = id;
    node.dataset.blockType = b.type;
    var error = ctx.errors && ctx.errors[id];
    var errorNode = el("div", "bk-error");
    errorNode.setAttribute("role", "alert");
    if (error) errorNode.textContent = error;
    else errorNode.hidden = true;
    node.appendChild(errorNode);
    return node;
  }

  function render(blocks, ctx) {
    var box = el("div", "bk-blocks");
    ctx = ctx || {};
    ctx.form = ctx.form || new Map();
    (blocks || []).forEach(function (b) {
      box.appendChild(block(b, ctx));
    });
    return box;
  }

  /* The values of the inputs (and of the checkboxes and menus in actions blocks) as Slack's client
   * starts them: initial_option(s), initial_value. */
  function initialForm(blocks) {
    var form = new Map();
    (blocks || []).forEach(function (b) {
      var elements = b.type === "input" ? [b.element] : b.type === "actions" ? b.elements || [] : [];
      elements.forEach(function (e) {
        if (!e || !e.action_id) return;
        var key = formKey(b.block_id, e.action_id);
        if (e.initial_options) form.set(key, e.initial_options.map(function (o) { return o.value; }));
        else if (e.initial_option) form.set(key, e.initial_option.value);
        else if (e.initial_value) form.set(key, e.initial_value);
      });
    });
    return form;
  }

  /* Show (or clear) response_action errors on already rendered blocks, keeping what was entered. */
  function showErrors(container, errors) {
    Array.prototype.forEach.call(container.querySelectorAll(".bk-block"), function (node) {
      var errorNode = node.querySelector(":scope > .bk-error");
      var message = errors && errors[node.dataset.blockId];
      errorNode.textContent = message || "";
      errorNode.hidden = !message;
      node.classList.toggle("bk-has-error", Boolean(message));
    });
  }

  /* Form values as {block_id: {action_id: value}} for the submit request. */
  function formValues(form) {
    var values = {};
    form.forEach(function (value, key) {
      var ids = JSON.parse(key);
      values[ids[0]] = values[ids[0]] || {};
      values[ids[0]][ids[1]] = value;
    });
    return values;
  }

  global.BlockKit = {
    render: render,
    initialForm: initialForm,
    showErrors: showErrors,
    formValues: formValues,
    allOptions: allOptions,
  };
})(window);

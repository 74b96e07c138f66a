// letters web client. Everything that comes from the user or the server is written with textContent
// (never innerHTML); this file is the page's only script (the Content-Security-Policy allows no inline code).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const pad = $("pad");
  const ctx = pad.getContext("2d");
  const INK = "#111111";

  const state = {
    strokes: [],          // [{width, points: [[x, y, pressure], ...]}]
    current: null,
    pointerId: null,
    image: null,          // {b64, url, source: "drawing"|"upload", edits (a drawing's)} of the last image sent
    edits: 0,             // the pad's changes so far (strokes begun, undone, cleared)
    prediction: null,     // the last /api/predict answer
    classes: [],
    maxUploadBytes: 0,    // the largest image the backend takes (/api/classes); 0 until known
    busy: false,
    saving: 0,            // feedbacks on their way (the feedback box is marked busy meanwhile)
    seq: 0,               // the number of the newest image asked about (older answers are not shown)
    saved: new Map(),     // image (base64) -> its feedback {message, failed}: saved (or refused), one per image
  };
  const SAVED_KEPT = 50;

  // ---------------------------------------------------------------- drawing pad (Pointer Events)
  function paintBackground() {
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#ffffff";                 // dark ink on white: what the model was trained on
    ctx.fillRect(0, 0, pad.width, pad.height);
    ctx.restore();
  }

  function drawStroke(stroke) {
    const pts = stroke.points;
    ctx.strokeStyle = INK;
    ctx.fillStyle = INK;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    if (pts.length === 1) {
      ctx.beginPath();
      ctx.arc(pts[0][0], pts[0][1], widthAt(stroke, pts[0]) / 2, 0, Math.PI * 2);
      ctx.fill();
      return;
    }
    for (let i = 1; i < pts.length; i++) {
      ctx.beginPath();
      ctx.lineWidth = widthAt(stroke, pts[i]);
      ctx.moveTo(pts[i - 1][0], pts[i - 1][1]);
      ctx.lineTo(pts[i][0], pts[i][1]);
      ctx.stroke();
    }
  }

  function widthAt(stroke, point) {
    // Pens report pressure; mice and most touch screens report 0.5 while pressed.
    const pressure = stroke.pen ? Math.max(0.15, point[2]) : 0.5;
    return stroke.width * (0.5 + pressure);
  }

  function redraw() {
    paintBackground();
    state.strokes.forEach(drawStroke);
    updateToolbar();
  }

  function padPoint(event) {
    const rect = pad.getBoundingClientRect();
    return [
      ((event.clientX - rect.left) / rect.width) * pad.width,
      ((event.clientY - rect.top) / rect.height) * pad.height,
      event.pressure || 0.5,
    ];
  }

  pad.addEventListener("pointerdown", (event) => {
    if (state.current || (event.pointerType === "mouse" && event.button !== 0)) return;
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    state.pointerId = event.pointerId;
    state.current = { width: strokeWidth(), pen: event.pointerType === "pen", points: [padPoint(event)] };
    state.strokes.push(state.current);
    drawStroke(state.current);
    padChanged();
  });

  pad.addEventListener("pointermove", (event) => {
    if (!state.current || event.pointerId !== state.pointerId) return;
    event.preventDefault();
    const events = typeof event.getCoalescedEvents === "function" ? event.getCoalescedEvents() : [];
    (events.length ? events : [event]).forEach((e) => {
      const stroke = state.current;
      const prev = stroke.points[stroke.points.length - 1];
      const point = padPoint(e);
      stroke.points.push(point);
      ctx.beginPath();
      ctx.strokeStyle = INK;
      ctx.lineCap = "round";
      ctx.lineWidth = widthAt(stroke, point);
      ctx.moveTo(prev[0], prev[1]);
      ctx.lineTo(point[0], point[1]);
      ctx.stroke();
    });
  });

  // The stroke being drawn is over: its pointer's further moves draw nothing.
  function stopStroke() {
    if (pad.hasPointerCapture(state.pointerId)) pad.releasePointerCapture(state.pointerId);
    state.current = null;
    state.pointerId = null;
  }
  function endStroke(event) {
    if (!state.current || event.pointerId !== state.pointerId) return;
    stopStroke();
    updateToolbar();
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);
  pad.addEventListener("contextmenu", (event) => event.preventDefault());

  function undo() {
    // Mid-stroke: the stroke being drawn would stay on the canvas, unrecorded; none drawn: the pad is unchanged.
    if (state.current || state.strokes.length === 0) return;
    state.strokes.pop();
    redraw();
    padChanged();
  }
  $("undo").addEventListener("click", undo);
  function clear() {
    // Mid-stroke (Clear pressed by keyboard, the pointer still down): the stroke being drawn goes with the others,
    // and the rest of its press draws nothing, which would stay on the canvas unrecorded.
    if (state.current) stopStroke();
    state.strokes = [];
    redraw();
    padChanged();
  }
  $("clear").addEventListener("click", clear);
  // The pen draws the slider's width as it stands: going back to the page, the browser restores the slider's value
  // without an input event (bfcache, or form state restored after this script ran), and its number follows on pageshow.
  const strokeWidth = () => Number($("stroke-width").value);
  function showStrokeWidth() {
    $("stroke-width-value").textContent = String(strokeWidth());
  }
  $("stroke-width").addEventListener("input", showStrokeWidth);
  window.addEventListener("pageshow", showStrokeWidth);
  // Ctrl+Z (Cmd+Z) undoes a stroke. With Shift it is the usual redo, which the pad does not have: nothing is done.
  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && !event.shiftKey && event.key.toLowerCase() === "z") {
      event.preventDefault();
      undo();
    }
  });

  // The pad no longer holds the drawing last sent: its answer, shown or on its way, is dimmed and its feedback
  // withheld (a letter chosen now would be stored with the earlier drawing) until the new drawing is answered.
  // An upload's answer is not the pad's: drawing leaves it as it is.
  function padChanged() {
    state.edits++;
    updateToolbar();
    if (changedSinceSent()) $("result").classList.add("stale");
    offerFeedback();
  }
  // Whether the pad changed after the drawing last sent was taken from it (its edits are those of that moment);
  // false for an upload.
  function changedSinceSent() {
    return state.image !== null && state.image.source === "drawing" && state.image.edits !== state.edits;
  }

  function updateToolbar() {
    const empty = state.strokes.length === 0;
    $("undo").disabled = empty;
    $("clear").disabled = empty;
    $("send").disabled = empty || state.busy;
  }

  // ---------------------------------------------------------------- messages
  // A message in two languages ("עברית · English." or lines) in a box whose direction follows its first words:
  // each part is isolated in its own direction, so the English part keeps its full stop at its end.
  // Unchanged text leaves the box as it is: a live region (the status line, a feedback's result) rewritten with the
  // same words is read out again by screen readers.
  function setBidiText(element, text) {
    if (element.textContent === String(text)) return;
    element.replaceChildren();
    // The box's direction is set from its first strong letter: isolated parts do not count in the browser's
    // own choice of a paragraph's direction, which then fell back to left-to-right with Hebrew first.
    const first = String(text).match(/[A-Za-z\u0590-\u05FF]/);
    element.dir = first && /[\u0590-\u05FF]/.test(first[0]) ? "rtl" : "ltr";
    String(text).split(/( · |\n)/).forEach((part, i) => {
      if (i % 2 === 1) {
        element.append(part);
      } else if (part) {
        const isolate = document.createElement("bdi");
        isolate.textContent = part;
        element.append(isolate);
      }
    });
  }

  // The error shown and what it is about ("letters": the list of letters could not be loaded, "serving": the model
  // server is down), for the error that is taken away once what it said no longer holds; null for an error that
  // stays until the next request.
  let errorAbout = null;
  function showError(message, about = null) {
    const box = $("error");
    setBidiText(box, message);
    box.hidden = false;
    errorAbout = about;
    if (!isVisible(box)) box.scrollIntoView({ behavior: "smooth", block: "center" });   // a phone scrolled away
  }
  function isVisible(element) {
    const box = element.getBoundingClientRect();
    return box.top >= 0 && box.bottom <= window.innerHeight;
  }
  // Focus leaving a control about to be disabled goes to ``target`` (keyboard and screen-reader users keep
  // their place instead of being sent back to the top of the page).
  function keepFocus(controls, target) {
    if (controls.includes(document.activeElement)) target.focus({ preventScroll: true });
  }
  function clearError() {
    $("error").hidden = true;
    $("error").textContent = "";
    errorAbout = null;
  }
  function clearErrorAbout(about) {
    if (!$("error").hidden && errorAbout === about) clearError();
  }

  function setServingStatus(up, text) {
    const line = $("serving-status");
    line.classList.toggle("status-unknown", up === null);   // (toggle, not remove and add: a class kept is not
    line.classList.toggle("status-up", up === true);        // written again)
    line.classList.toggle("status-down", up === false);
    setBidiText($("serving-status-text"), text);
  }

  const DOWN_HE = "שרת המודל אינו זמין";   // "the model server is unavailable"
  const BUSY_HE = "שרת המודל עמוס";   // "the model server is busy"
  const SLOW_HE = "שרת המודל איטי";   // "the model server is slow"
  const NOT_ANSWERING = "השרת אינו עונה · This page's server is not answering";
  const downText = (message) => `${DOWN_HE}\n${message || "The model server is down."}`;
  const busyText = (message) => `${BUSY_HE}\n${message || "The model server is busy."}`;
  const slowText = (message) => `${SLOW_HE}\n${message || "The model server is slow."}`;
  // This page's own server refusing a request while it stops (503 stopping): said as such (REASONS_HE), the model
  // server's status line left as it was.
  const stopping = (body) => Boolean(body && body.reason === "stopping");
  const STATUS_EVERY_MS = 30000;   // the model server's status is checked this often

  async function checkStatus() {
    try {
      const response = await fetch("/api/status", { cache: "no-store" });
      const body = await response.json();
      if (response.status === 429) {
        setServingStatus(null, busyText(body.error));
      } else if (response.status === 504) {   // no answer in time: slow, maybe busy, not known to be down
        setServingStatus(null, slowText(body.error));
      } else if (stopping(body)) {   // this page's server, restarting: nothing known of the model server
        return;
      } else if (response.ok) {
        const available = (body.versions || []).filter((v) => v.state === "AVAILABLE").map((v) => v.version);
        setServingStatus(true, `שרת המודל פעיל · Model server up — ${body.model}, versions ${available.join(", ")}`);
        clearErrorAbout("serving");        // a request's "the model server is down" no longer holds
      } else {
        setServingStatus(false, downText(body.error || `The model server is down (HTTP ${response.status}).`));
      }
    } catch (err) {
      setServingStatus(false, NOT_ANSWERING);
    }
  }

  // ---------------------------------------------------------------- sending
  function bytesToBase64(bytes) {
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(binary);
  }

  function padBlob() {
    return new Promise((resolve, reject) => {
      pad.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("canvas export failed"))), "image/png");
    });
  }

  // The server's reasons for refusing a request, in Hebrew; its English message follows. The model server's own
  // (serving_unreachable, serving_timeout, serving_error, model_not_loaded) are said by their status, 429 busy,
  // 504 slow, 503 down (postPredict); a 503 stopping is this page's server's, said by its reason.
  const REASONS_HE = {
    empty: "התמונה ריקה",
    too_large: "התמונה גדולה מדי",
    decompression_bomb: "בתמונה יש יותר מדי פיקסלים",
    side_too_long: "התמונה ארוכה או רחבה מדי",
    model_rejected_image: "המודל לא הצליח לקרוא את התמונה",
    not_an_image: "זו אינה תמונה שהשרת יכול לקרוא",
    unsupported_format: "סוג התמונה אינו נתמך",
    corrupt: "התמונה פגומה",
    truncated_or_corrupt: "התמונה קטועה או פגומה",
    no_ink: "אין אות בתמונה",
    bad_base64: "התמונה לא הגיעה שלמה",
    already_stored: "התמונה הזאת כבר נשמרה",
    unknown_label: "אות לא מוכרת",
    invalid_feedback: "המשוב אינו תקין",
    not_stored: "המשוב לא נשמר",
    bad_serving_response: "שרת המודל ענה תשובה לא צפויה",
    timeout: "הבקשה לא הגיעה שלמה בזמן",
    missing_field: "בבקשה חסר שדה",
    bad_json: "גוף הבקשה אינו תקין",
    bad_multipart: "טופס ההעלאה אינו תקין",
    bad_request: "הבקשה אינה תקינה",
    bad_route: "מסלול לא מוכר",
    bad_source: "מקור תמונה לא מוכר",
    length_required: "בבקשה חסר אורך הגוף",
    unsupported_media_type: "סוג התוכן של הבקשה אינו נתמך",
    uri_too_long: "כתובת הבקשה ארוכה מדי",
    headers_too_large: "כותרות הבקשה גדולות מדי",
    not_found: "הנתיב לא נמצא",
    method_not_allowed: "הפעולה אינה מותרת בנתיב הזה",
    not_implemented: "הפעולה אינה נתמכת",
    http_version_not_supported: "גרסת HTTP אינה נתמכת",
    stopping: "שרת הדף מופעל מחדש: נסו שוב",   // "this page's server is restarting: try again"
    internal_error: "שגיאה פנימית בשרת",
  };
  const serverMessage = (body, status) => {
    const english = (body && body.error) || `HTTP ${status}`;
    const hebrew = body && REASONS_HE[body.reason];
    return hebrew ? `${hebrew} · ${english}` : english;
  };

  async function postPredict(init) {
    let response;
    try {
      response = await fetch("/api/predict", Object.assign({ method: "POST", cache: "no-store" }, init));
    } catch (err) {
      throw new Error(`${NOT_ANSWERING}.`);
    }
    let body = null;
    try { body = await response.json(); } catch (err) { body = null; }
    if (!response.ok) {
      const message = serverMessage(body, response.status);
      if (response.status === 503 && !stopping(body)) {
        const text = downText((body && body.error) || `The model server is down (HTTP ${response.status}).`);
        setServingStatus(false, text);
        throw Object.assign(new Error(text), { about: "serving" });
      }
      if (response.status === 504) throw new Error(slowText(body && body.error));   // slow: not marked down
      if (response.status === 429) throw new Error(busyText(body && body.error));   // busy: not marked down
      throw new Error(message);
    }
    return body;
  }

  // One image at a time is asked about. A new upload or drop while an answer is coming replaces that request
  // (``supersede``): only the newest one's answer or error is shown. Recognise, for the same drawing, waits.
  async function run(task, supersede = false) {
    if (state.busy && !supersede) return;
    const seq = ++state.seq;
    const current = () => seq === state.seq;
    const imageBefore = state.image;
    state.busy = true;
    clearError();
    keepFocus([$("send")], $("result-card"));
    $("send").disabled = true;
    $("send").setAttribute("aria-busy", "true");
    try {
      await task(current);
    } catch (err) {
      if (current()) {
        showError(err.message || String(err), err.about);
        // A file refused before it was sent (unreadable, too large) leaves the answer shown: it is still the answer
        // of the image last sent. Once an image was sent (setImage), an earlier image's answer is not this one's,
        // nor is an answer that could not be shown (a 200 whose body is no answer).
        if (state.image !== imageBefore || state.prediction === null) {
          state.prediction = null;
          $("result").hidden = true;
          $("result").classList.remove("stale");
          prepareFeedback();                   // nor its feedback: no answer shown, none offered
          $("result-card").removeAttribute("aria-busy");
          $("result-empty").hidden = false;
        }
      }
    } finally {
      if (current()) {
        loadClasses();                       // none yet: asked for again once the page's server has answered
        state.busy = false;
        $("result-pending").hidden = true;
        $("send").removeAttribute("aria-busy");
        updateToolbar();
      }
    }
  }

  $("send").addEventListener("click", () => run(async (current) => {
    if (state.strokes.length === 0) throw new Error("כתבו אות קודם · Draw a letter first.");
    const edits = state.edits;   // the pad as exported now: a stroke begun while it is encoded is not in it
    const blob = await padBlob();
    const bytes = new Uint8Array(await blob.arrayBuffer());
    const b64 = bytesToBase64(bytes);
    if (!current()) return;
    setImage({ b64, url: URL.createObjectURL(blob), source: "drawing", edits });
    const answer = await postPredict({
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ image: b64, source: "canvas" }),
    });
    if (current()) showAnswer(answer);
  }));

  // A folder dropped, or a file gone (moved, deleted) since it was chosen, cannot be read (a NotFoundError).
  const UNREADABLE = "לא ניתן לקרוא את הקובץ: גררו או בחרו קובץ תמונה אחד · The file could not be read: drop or " +
    "choose one image file, not a folder.";

  // Any file is sent: the server reads what it is from its bytes (a PNG named bet.img has a type guessed from its
  // name that is not an image's), and says so when it is not an image it accepts. One over the backend's limit is
  // refused before it is read (a video dropped by mistake would be read, encoded and sent whole only to be refused).
  async function sendFile(file) {
    if (!file) return;
    await run(async (current) => {
      if (state.maxUploadBytes && file.size > state.maxUploadBytes) {
        throw new Error(`${REASONS_HE.too_large} · The image is too large: ${file.size} bytes, over the ` +
                        `${state.maxUploadBytes}-byte limit.`);
      }
      const bytes = new Uint8Array(await file.arrayBuffer().catch(() => { throw new Error(UNREADABLE); }));
      if (!current()) return;
      setImage({ b64: bytesToBase64(bytes), url: URL.createObjectURL(file), source: "upload" });
      const form = new FormData();
      form.append("image", file, file.name || "upload");
      form.append("source", "upload");
      const answer = await postPredict({ body: form });
      if (current()) showAnswer(answer);
    }, true);
  }

  $("file").addEventListener("change", (event) => {
    const file = event.target.files && event.target.files[0];
    sendFile(file);
    event.target.value = "";
  });

  const zone = $("drop-zone");
  ["dragenter", "dragover"].forEach((type) => zone.addEventListener(type, (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  }));
  ["dragleave", "dragend"].forEach((type) => zone.addEventListener(type, () => zone.classList.remove("dragging")));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const file = event.dataTransfer && event.dataTransfer.files && event.dataTransfer.files[0];
    if (file) sendFile(file);
  });
  // A file dropped outside the zone must not navigate away from the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  function setImage(image) {
    if (state.image && state.image.url) URL.revokeObjectURL(state.image.url);
    state.image = image;
    state.prediction = null;
    prepareFeedback();   // the last answer's feedback belongs to the last image: hidden until the new answer
    $("result").classList.add("stale");   // the answer shown is the last image's: dimmed until the new one
    $("result-card").setAttribute("aria-busy", "true");
    $("result-empty").hidden = true;      // an image is asked about: the page says so until its answer or error
    $("result-pending").hidden = false;
  }

  // ---------------------------------------------------------------- answer
  // To a tenth of a percent (0.9952 is 99.5%); what rounds to 100.0 or 0.0 is 100% or 0%.
  function percent(p) {
    const shown = (p * 100).toFixed(1);
    return `${shown === "100.0" || shown === "0.0" ? shown.slice(0, -2) : shown}%`;
  }

  function showAnswer(answer) {
    state.prediction = answer;
    const info = answer.image || {};
    const sent = info.sent_format === "JPEG" ? "jpeg" : "png";
    if (info.sent_b64) {   // the server re-encoded the upload (e.g. TIFF/WebP): show what the model got
      // Feedback still sends the upload as it came (the server re-encodes it the same way): a re-encoding
      // can be several times larger and over the request limit.
      $("sent-image").src = `data:image/${sent};base64,${info.sent_b64}`;
    } else {
      $("sent-image").src = state.image.url;
    }
    $("image-info").textContent = `${info.format || "?"} ${info.width}×${info.height}` +
      (info.reencoded ? ` → ${sent.toUpperCase()}` : "");

    const list = $("top3");
    list.replaceChildren();
    answer.top.forEach((entry, rank) => {
      const item = document.createElement("li");
      item.dataset.class = entry.class;
      const glyph = document.createElement("span");
      glyph.className = "glyph";
      glyph.lang = "he";
      glyph.textContent = entry.letter;
      const name = document.createElement("span");
      name.className = "name";
      const label = document.createElement("span");
      label.lang = "en";
      label.dir = "ltr";
      label.textContent = `${rank + 1}. ${entry.class}`;
      const prob = document.createElement("span");
      prob.className = "prob";
      prob.dir = "ltr";
      prob.textContent = percent(entry.probability);
      name.append(label, prob);
      const bar = document.createElement("span");
      bar.className = "bar";
      const fill = document.createElement("span");
      fill.style.inlineSize = `${Math.max(0, Math.min(1, entry.probability)) * 100}%`;
      bar.append(fill);
      item.append(glyph, name, bar);
      list.append(item);
    });

    $("meta-version").textContent = answer.model_version;
    $("meta-route").textContent = answer.route;
    $("meta-latency").textContent = `${Math.round(answer.latency_ms)} ms`;
    const fallback = $("meta-fallback");
    fallback.hidden = !answer.fallback_reason;
    setBidiText(fallback, answer.fallback_reason
      ? `ענתה הגרסה האחרונה · requested ${answer.requested_route}; answered by the latest version: ` +
        answer.fallback_reason : "");
    $("result-empty").hidden = true;
    $("result").hidden = false;
    $("result").classList.toggle("stale", changedSinceSent());   // the pad changed while it was coming
    $("result-card").removeAttribute("aria-busy");
    setServingStatus(true, `שרת המודל פעיל · Model server up — version ${answer.model_version} (${answer.route})`);
    const saved = state.image && state.saved.get(state.image.b64);
    if (saved) answer.feedback = saved;   // this image's feedback was given already (or refused: stored before)
    prepareFeedback();
    if (window.matchMedia("(max-width: 759px)").matches) {
      $("result-card").scrollIntoView({ behavior: "smooth", block: "start" });
    }
  }

  // ---------------------------------------------------------------- feedback
  function prepareFeedback() {
    const on = $("feedback-mode").checked && state.prediction !== null;
    $("feedback").hidden = !on;
    // One answer gets one feedback: once it is sent (or on its way), turning the mode off and on again
    // shows what was saved instead of asking again.
    showFeedback(state.prediction && state.prediction.feedback);
    offerFeedback();
    document.querySelectorAll("#letter-grid button").forEach((b) => b.setAttribute("aria-pressed", "false"));
    if (state.prediction) {
      const best = state.prediction.top[0];
      $("confirm-letter").textContent = `${best.letter} (${best.class})`;
    }
  }

  // Feedback is offered for the answer shown unless it was given (or is on its way), or the pad changed after its
  // image was sent, which is said.
  function offerFeedback() {
    const changed = changedSinceSent();
    $("feedback-withheld").hidden = !changed;
    if (changed) keepFocus(feedbackControls(), $("feedback-withheld"));
    setFeedbackEnabled(!(state.prediction && state.prediction.feedback) && !changed);
  }

  // What became of an answer's feedback ({message, failed}), red when nothing was stored; none: nothing shown.
  function showFeedback(feedback) {
    const out = $("feedback-result");
    out.classList.toggle("failed", Boolean(feedback && feedback.failed));
    setBidiText(out, feedback ? feedback.message : "");
  }

  function feedbackControls() {
    return [$("confirm"), ...document.querySelectorAll("#letter-grid button")];
  }
  function setFeedbackEnabled(enabled) {
    feedbackControls().forEach((b) => { b.disabled = !enabled; });
  }

  async function sendFeedback(label, button) {
    if (!state.prediction || !state.image || state.prediction.feedback || changedSinceSent()) return;
    const prediction = state.prediction;
    const image = state.image;
    const best = prediction.top[0];
    prediction.feedback = { message: "שומר… · saving…" };
    keepFocus(feedbackControls(), $("feedback-result"));
    setFeedbackEnabled(false);
    if (button) button.setAttribute("aria-pressed", "true");
    showFeedback(prediction.feedback);
    setSaving(+1);
    try {
      const response = await fetch("/api/feedback", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          image: image.b64,
          label,
          predicted_label: best.class,
          probability: best.probability,
          model_version: prediction.model_version,
          route: prediction.route,
        }),
      }).catch(() => { throw new Error(`${NOT_ANSWERING}.`); });
      const body = await response.json().catch(() => null);
      if (response.status === 409 && body && body.reason === "already_stored") {   // given before, another label
        if (button) button.setAttribute("aria-pressed", "false");   // not stored under the letter just chosen
        prediction.feedback = { message: serverMessage(body, response.status), failed: true };
      } else {
        if (!response.ok) throw new Error(serverMessage(body, response.status));
        prediction.feedback = { message: `תודה! נשמר · Thanks, saved as ${body.label} (${body.id.slice(0, 8)})` };
      }
      state.saved.set(image.b64, prediction.feedback);
      if (state.saved.size > SAVED_KEPT) state.saved.delete(state.saved.keys().next().value);
      if (state.prediction === prediction) showFeedback(prediction.feedback);
    } catch (err) {
      prediction.feedback = null;              // not saved: it may be sent again
      if (button) button.setAttribute("aria-pressed", "false");
      if (state.prediction === prediction) {
        showFeedback({ message: `לא נשמר · Not saved: ${err.message}`, failed: true });
        offerFeedback();
      }
    } finally {
      setSaving(-1);
    }
  }
  function setSaving(change) {
    state.saving += change;
    if (state.saving > 0) $("feedback").setAttribute("aria-busy", "true");
    else $("feedback").removeAttribute("aria-busy");
  }

  $("confirm").addEventListener("click", () => {
    if (state.prediction) sendFeedback(state.prediction.top[0].class, null);
  });
  $("feedback-mode").addEventListener("change", prepareFeedback);

  function buildLetterGrid(classes) {
    const grid = $("letter-grid");
    grid.replaceChildren();
    classes.forEach((c) => {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.class = c.class;
      button.title = c.class;
      button.lang = "he";
      button.setAttribute("aria-label", `${c.letter} ${c.class.replace("_", " ")}`);   // the name holds what it shows
      button.setAttribute("aria-pressed", "false");
      button.textContent = c.letter;
      button.addEventListener("click", () => sendFeedback(c.class, button));
      grid.append(button);
    });
  }

  // The 27 letters and the upload limit. When they cannot be loaded (the page's server restarting just then: a
  // connection refused, a 503 stopping), the page says so and asks again, after 1 s, 2 s, 4 s … at most every
  // STATUS_EVERY_MS, at each status check and with each request, until they come: then the letters are offered and
  // its message goes.
  const CLASSES_FAILED = "לא ניתן לטעון את רשימת האותיות · Could not load the list of letters.";
  const CLASSES_RETRY_FIRST_MS = 1000;
  const classesLoad = { pending: null, timer: 0, delay: CLASSES_RETRY_FIRST_MS };

  async function fetchClasses() {
    const response = await fetch("/api/classes");
    const body = await response.json();
    if (!response.ok || !Array.isArray(body.classes) || body.classes.length === 0) {
      throw new Error(`no classes (HTTP ${response.status})`);
    }
    return body;
  }

  function classesLoaded(body) {
    state.classes = body.classes;
    state.maxUploadBytes = body.max_upload_bytes || 0;
    buildLetterGrid(state.classes);
    offerFeedback();                         // the new buttons as the answer shown allows
    clearErrorAbout("letters");
  }

  function classesFailed() {
    if ($("error").hidden) showError(CLASSES_FAILED, "letters");   // (another error shown is left as it is)
    classesLoad.timer = setTimeout(loadClasses, classesLoad.delay);
    classesLoad.delay = Math.min(2 * classesLoad.delay, STATUS_EVERY_MS);
  }

  // Asks for the classes unless they are loaded or on their way.
  function loadClasses() {
    if (state.classes.length > 0 || classesLoad.pending) return;
    clearTimeout(classesLoad.timer);
    classesLoad.pending = fetchClasses()
      .then(classesLoaded, classesFailed)
      .finally(() => { classesLoad.pending = null; });
  }

  // ---------------------------------------------------------------- start
  redraw();
  showStrokeWidth();
  loadClasses();
  checkStatus();
  setInterval(() => { checkStatus(); loadClasses(); }, STATUS_EVERY_MS);
  document.body.dataset.ready = "true";
})();

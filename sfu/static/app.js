/*
 * SFU demo client: plain ES2020, no build step, no external resources.
 * Speaks the WebSocket protocol of docs/protocol.md with two peer connections:
 * the publisher (this client offers) and the subscriber (the server offers).
 *
 * URL: /?room=R&name=N[&token=T] joins room R as N at once; without room/name a form is shown.
 * `&relay=1` sends all media through the TURN servers `joined` names (iceTransportPolicy relay).
 * Without `token`, a dev-mode server's GET /api/dev/token supplies one (other servers answer 404,
 * and the join goes without a token, which they refuse with `unauthorized`).
 *
 * Test API: window.sfuDemo (used by tests/browser; keep it stable)
 *   joined            Promise, resolves with the `joined` message once it arrived; rejects if the
 *                     join is refused (`error` before `joined`) or the socket closes first.
 *                     Replaced by a fresh promise when the client rejoins after `reconnect`.
 *   participantId     own participant id (null until joined)
 *   room              room name
 *   ws                the current WebSocket (raw access for tests)
 *   lastError         last `error` message object received ({type, code, message}) or null
 *   messages          every server message received, parsed, in order (kept across reconnects;
 *                     capped at the newest 20000)
 *   reconnects        how many times the client rejoined after a `reconnect` message
 *   resumes           how many times the session was taken back (`resume`) after its socket
 *                     dropped without a close
 *   remote()          async -> [{participant, name, trackIds, hasVideo, hasAudio, videoWidth,
 *                     videoHeight, framesDecoded, audioBytes, layer, ...extra}] one per remote
 *                     participant (= one per tile). trackIds: server track ids currently received
 *                     for that participant. videoWidth/videoHeight: the <video> element's size,
 *                     else inbound-rtp frameWidth/frameHeight. framesDecoded / audioBytes: summed
 *                     inbound-rtp framesDecoded (video) / bytesReceived (audio) of the subscriber
 *                     connection. layer: last `layer_changed` layer of the video track (or null).
 *                     Extra fields: publishedTrackIds, videoTrack, frameWidth, frameHeight,
 *                     framesPerSecond, videoBytes, explicitLayer, paused.
 *   frameLog(pid)     -> [{t, width, height}] one entry per presented frame of that participant's
 *                     video (requestVideoFrameCallback; t = performance.now()); newest 20000 kept
 *   resetFrameLog(pid?) clears the frame log of one participant, or of all when pid is omitted
 *   setLayer(pid, layer) sends `subscription {track, layer}` for the participant's video track and
 *                     stops size-driven updates for it; layer null clears the explicit layer and
 *                     resumes size-driven updates. If the track is not known yet it is sent once
 *                     it is. Returns the track id or null.
 *   setPaused(pid, paused) sends `subscription {track, paused}`; returns the track id or null.
 *   leave()           sends `leave`, closes the socket and both peer connections, stops the camera.
 *   restartIce()      restarts ICE on both connections (what a network change does): the
 *                     publisher offers anew with new credentials, the server offers the subscriber
 *                     connection anew after `ice_restart`. Returns false when not joined.
 *   iceRestarts       how many restarts ran (by restartIce(), a network change or a failed path)
 *   activeSpeakers    the last `active_speakers`: {speakers: [{participant, level}], dominant}
 *                     (null before the first); the tiles of speakers get class `speaking`, the
 *                     dominant speaker's `dominant`
 *
 * Size-driven subscription: every remote tile sends `subscription {track, width, height}` with its
 * video element's client size (CSS px x devicePixelRatio), debounced, unless setLayer() set a layer.
 *
 * A network change (`online`, `navigator.connection` change) or a connection whose ICE failed
 * restarts ICE (at most every 5 s), so media moves to the new path without leaving the room.
 *
 * A socket that drops without a close while joined (network change, proxy timeout) is replaced:
 * a new socket sends `resume {room, token}` with the token of the `session` message, every second
 * until the session's grace runs out; the peer connections stay up meanwhile.
 *
 * `reconnect {reason, delay_ms?}` (server drain): everything is closed except the local camera
 * (kept so the rejoin needs no new permission prompt) and the same room is joined again on the
 * same URL after delay_ms (0 when absent).
 */
(() => {
  'use strict';

  const MAX_MESSAGES = 20000;
  const MAX_FRAMES = 20000;
  const SIZE_DEBOUNCE_MS = 250;
  const DRAINING_RETRIES = 5;
  const LAYERS = ['q', 'h', 'f'];
  const SEND_ENCODINGS = [
    { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150000 },
    { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500000 },
    { rid: 'f', maxBitrate: 1500000 },
  ];

  const params = new URLSearchParams(location.search);
  const cfg = {
    room: params.get('room'),
    name: params.get('name'),
    token: params.get('token') || undefined,
    codec: (params.get('codec') || 'vp8').toLowerCase(),
    relay: params.get('relay') === '1',
  };

  const el = (id) => document.getElementById(id);
  const ui = {
    info: el('info'), status: el('status'), bandwidth: el('bandwidth'), errors: el('errors'), form: el('join-form'),
    grid: el('grid'), leave: el('leave'), rejoin: el('rejoin'), share: el('share'),
  };

  // ---------------------------------------------------------------- state

  let session = null; // the current connection attempt, see startSession()
  let sessionSeq = 0;
  let localStream = null; // kept across reconnects, stopped by leave()
  let localTile = null;
  let left = false;
  let reconnectTimer = null;
  let resolveJoined = null;
  let rejectJoined = null;

  /** participant id -> Remote (see newRemote) */
  const remotes = new Map();
  /** server track id -> participant id */
  const trackOwner = new Map();
  /** server track id -> last layer from layer_changed */
  const layerByTrack = new Map();
  /**
   * Ids of participants the server said left. A subscriber offer sent before `participant_left`
   * may still be in progress (and name their tracks) when it arrives: it must not bring them back.
   */
  const departed = new Set();
  const MAX_DEPARTED = 10000;

  const api = {
    joined: null,
    participantId: null,
    room: cfg.room,
    ws: null,
    lastError: null,
    messages: [],
    reconnects: 0,
    resumes: 0,
    iceRestarts: 0,
    activeSpeakers: null,
    restartIce: () => restartIce(session),
    remote,
    frameLog,
    resetFrameLog,
    setLayer,
    setPaused,
    leave,
    /** Shares `stream` (default: asks for a screen) as a screen share; false if not joined. */
    shareScreen: (stream) => shareScreen(session, stream),
    stopShare: () => stopShare(session),
    /** The current peer connections, for diagnostics: {publisher, subscriber}. */
    peerConnections: () => ({ publisher: session && session.pubPc, subscriber: session && session.subPc }),
  };
  window.sfuDemo = api;
  newJoinedPromise();

  function newJoinedPromise() {
    api.joined = new Promise((resolve, reject) => {
      resolveJoined = resolve;
      rejectJoined = reject;
    });
    api.joined.catch(() => {}); // failures are shown in the UI; avoid unhandled rejections
  }

  // ---------------------------------------------------------------- UI helpers

  function setStatus(text, cls) {
    ui.status.textContent = text;
    ui.status.className = cls || '';
  }

  function showError(code, message) {
    const li = document.createElement('li');
    const c = document.createElement('code');
    c.textContent = code;
    const m = document.createElement('span');
    m.textContent = message || '';
    const x = document.createElement('button');
    x.type = 'button';
    x.textContent = '\u00d7';
    x.title = 'dismiss';
    x.onclick = () => li.remove();
    li.append(c, m, x);
    ui.errors.prepend(li);
    while (ui.errors.children.length > 3) ui.errors.lastElementChild.remove();
    console.warn('sfu error', code, message);
  }

  function playVideo(video, tile) {
    const p = video.play();
    if (!p || !p.catch) return;
    p.catch((err) => {
      if (!err || err.name !== 'NotAllowedError' || video.muted) return;
      // Autoplay with sound refused: play muted and offer a button to unmute.
      video.muted = true;
      video.play().catch(() => {});
      if (tile && !tile.querySelector('.unmute')) {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'unmute';
        b.textContent = 'Unmute';
        b.onclick = () => { video.muted = false; video.play().catch(() => {}); b.remove(); };
        tile.append(b);
      }
    });
  }

  function makeTile(label, local) {
    const tile = document.createElement('div');
    tile.className = local ? 'tile local' : 'tile';
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    if (local) video.muted = true;
    const lab = document.createElement('div');
    lab.className = 'label';
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = label;
    const layer = document.createElement('span');
    layer.className = 'badge layer';
    layer.title = 'layer received';
    const res = document.createElement('span');
    res.className = 'badge res';
    lab.append(name, layer, res);
    tile.append(video, lab);
    return { tile, video, nameEl: name, layerEl: layer, resEl: res };
  }

  // Resolution badges, refreshed once a second.
  setInterval(() => {
    const all = [...remotes.values()];
    if (localTile) all.push(localTile);
    for (const t of all) {
      const v = t.video;
      t.resEl.textContent = v.videoWidth ? `${v.videoWidth}\u00d7${v.videoHeight}` : '';
    }
  }, 1000);

  // ---------------------------------------------------------------- signaling

  function wsUrl() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${proto}//${location.host}/ws`;
  }

  function send(s, msg) {
    if (!s || s.closed || !s.ws || s.ws.readyState !== WebSocket.OPEN) return false;
    s.ws.send(JSON.stringify(msg));
    return true;
  }

  function sendCurrent(msg) {
    return send(session, msg);
  }

  function startSession(drainingAttempt) {
    drainingAttempt = drainingAttempt || 0;
    const s = {
      seq: ++sessionSeq,
      ws: null,
      pubPc: null,
      subPc: null,
      joined: false,
      closed: false,
      midMap: {}, // subscriber mid -> TrackRef, from the last server offer
      subChain: Promise.resolve(), // serializes subscriber offers
      pending: { publisher: [], subscriber: [] }, // candidates waiting for the SDP to be sent
      signaled: { publisher: false, subscriber: false },
      endSent: { publisher: false, subscriber: false },
    };
    session = s;
    ui.info.textContent = `room ${cfg.room} \u00b7 ${cfg.name}`;
    setStatus('connecting\u2026');
    ui.leave.hidden = false;
    ui.share.hidden = !(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
    ui.rejoin.hidden = true;

    const mediaReady = acquireMedia();
    mediaReady.then((stream) => { if (stream && !left && s === session) showLocal(stream); });
    const tokenReady = joinToken();

    openSocket(s, () => tokenReady.then((token) => {
      if (s !== session || s.closed) return;
      const join = { type: 'join', room: cfg.room, name: cfg.name };
      if (token) join.token = token;
      send(s, join);
      setStatus('joining\u2026');
    }), mediaReady, drainingAttempt);
  }

  /** A socket for session `s`; `first()` sends its first message once it is open. */
  function openSocket(s, first, mediaReady, drainingAttempt) {
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (err) {
      failSession(s, 'connect_failed', String(err && err.message || err));
      return;
    }
    s.ws = ws;
    api.ws = ws;
    ws.onopen = () => {
      if (s !== session || s.ws !== ws) return;
      first();
    };
    ws.onmessage = (ev) => {
      if (s !== session || s.closed || s.ws !== ws) return;
      if (typeof ev.data !== 'string') return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (err) {
        showError('client', `unparsable server message: ${String(ev.data).slice(0, 80)}`);
        return;
      }
      api.messages.push(msg);
      if (api.messages.length > MAX_MESSAGES) api.messages.splice(0, api.messages.length - MAX_MESSAGES);
      try {
        handleMessage(s, msg, mediaReady, drainingAttempt);
      } catch (err) {
        console.error(err);
        showError('client', `handling ${msg && msg.type}: ${err && err.message || err}`);
      }
    };
    ws.onerror = () => { /* onclose follows */ };
    ws.onclose = (ev) => {
      if (s !== session || s.closed || s.ws !== ws) return;
      const why = `connection closed (code ${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`;
      if (s.joined && s.resumeToken && !s.resume) {
        s.resume = { token: s.resumeToken, until: Date.now() + s.resumeGraceMs, attempts: 0 };
      }
      if (s.joined && s.resume && Date.now() < s.resume.until) {
        // the session waits on the server: take it back on a new socket
        setStatus('connection lost, resuming\u2026', 'bad');
        setTimeout(() => {
          if (s !== session || s.closed) return;
          openSocket(s, () => send(s, { type: 'resume', room: cfg.room, token: s.resume.token }), mediaReady, drainingAttempt);
        }, s.resume.attempts++ === 0 ? 0 : 1000);
        return;
      }
      failSession(s, 'disconnected', why);
    };
  }

  /** The join token: ?token= if given, else a development token from a --dev server, else null. */
  async function joinToken() {
    if (cfg.token) return cfg.token;
    try {
      const q = new URLSearchParams({ room: cfg.room, name: cfg.name });
      const res = await fetch(`/api/dev/token?${q}`, { cache: 'no-store' });
      if (!res.ok) return null;
      const body = await res.json();
      return typeof body.token === 'string' ? body.token : null;
    } catch (_) {
      return null;
    }
  }

  /** The session ended without us asking for it. */
  function failSession(s, code, message) {
    if (s.closed) return;
    showError(code, message);
    closeSession(s, false);
    setStatus(s.joined ? 'disconnected' : 'failed', 'bad');
    ui.leave.hidden = true;
    ui.share.hidden = true;
    ui.rejoin.hidden = false;
    if (!s.joined && rejectJoined) rejectJoined(new Error(`${code}: ${message}`));
  }

  function closeSession(s, sendLeave) {
    if (s.closed) return;
    if (sendLeave) send(s, { type: 'leave' });
    s.closed = true;
    if (s.ws) {
      s.ws.onopen = s.ws.onmessage = s.ws.onclose = s.ws.onerror = null;
      try { s.ws.close(1000); } catch (_) { /* ignore */ }
    }
    for (const pc of [s.pubPc, s.subPc]) {
      if (pc) try { pc.close(); } catch (_) { /* ignore */ }
    }
    for (const id of [...remotes.keys()]) removeRemote(id);
    trackOwner.clear();
    layerByTrack.clear();
  }

  function handleMessage(s, msg, mediaReady, drainingAttempt) {
    if (!msg || typeof msg.type !== 'string') return;
    switch (msg.type) {
      case 'joined':
        onJoined(s, msg, mediaReady)
          .catch((err) => { if (!s.closed) showError('client', `publishing: ${err && err.message || err}`); });
        return undefined;
      case 'answer': return onPublisherAnswer(s, msg);
      case 'offer':
        s.subChain = s.subChain
          .then(() => onSubscriberOffer(s, msg))
          .catch((err) => { if (!s.closed) showError('client', `subscriber offer: ${err && err.message || err}`); });
        return undefined;
      case 'candidate': return onServerCandidate(s, msg);
      case 'participant_joined': return upsertParticipant(msg.participant);
      case 'participant_left': return onParticipantLeft(msg.participant);
      case 'track_published': return onTrackPublished(msg.participant, msg.track);
      case 'track_unpublished': return onTrackUnpublished(msg.participant, msg.track);
      case 'layer_changed': return onLayerChanged(msg.track, msg.layer, msg.reason);
      case 'publish_layers': return onPublishLayers(s, msg.active);
      case 'bandwidth': return onBandwidth(msg.estimate_bps);
      case 'active_speakers': return onActiveSpeakers(msg);
      case 'reconnect': return onReconnect(s, msg);
      case 'session':
        // how to take the session back if the socket drops: until its grace runs out
        s.resumeToken = msg.resume_token;
        s.resumeGraceMs = Number(msg.grace_ms) || 0;
        s.resume = null;
        return undefined;
      case 'resumed':
        api.resumes += 1;
        s.resume = null;
        setStatus('joined', 'ok');
        return undefined;
      case 'error': return onError(s, msg, drainingAttempt);
      default:
        console.debug('ignoring server message', msg.type);
        return undefined;
    }
  }

  function onError(s, msg, drainingAttempt) {
    api.lastError = msg;
    showError(msg.code || 'error', msg.message || '');
    if (msg.code === 'resume_failed') {
      failSession(s, 'disconnected', 'the session could not be resumed: rejoin');
      return;
    }
    if (s.joined) return; // the session goes on
    // Anything refused before `joined` is the join itself.
    if (msg.code === 'draining' && drainingAttempt < DRAINING_RETRIES) {
      // This node takes no new rooms; the same URL may land on another node.
      closeSession(s, false);
      setStatus('node draining, retrying\u2026');
      reconnectTimer = setTimeout(() => { reconnectTimer = null; startSession(drainingAttempt + 1); },
        500 * (drainingAttempt + 1));
      return;
    }
    failSession(s, msg.code || 'error', `join refused: ${msg.message || ''}`);
  }

  function onReconnect(s, msg) {
    let delay = Number(msg.delay_ms);
    if (!Number.isFinite(delay) || delay < 0) delay = 0;
    delay = Math.min(delay, 120000);
    setStatus(`reconnecting (${msg.reason || 'server request'})\u2026`);
    closeSession(s, false);
    newJoinedPromise();
    api.participantId = null;
    reconnectTimer = setTimeout(() => {
      reconnectTimer = null;
      if (left) return;
      api.reconnects += 1;
      startSession(0);
    }, delay);
  }

  async function onJoined(s, msg, mediaReady) {
    s.joined = true;
    // TURN servers with credentials for this participant (a node with --turn-secret)
    s.iceServers = Array.isArray(msg.ice_servers) ? msg.ice_servers : [];
    api.participantId = msg.participant && msg.participant.id || null;
    if (msg.room) api.room = msg.room;
    setStatus('joined', 'ok');
    for (const p of msg.participants || []) upsertParticipant(p);
    if (resolveJoined) resolveJoined(msg);
    const stream = await mediaReady;
    if (s.closed) return;
    if (stream) {
      showLocal(stream);
      await publish(s, stream);
    }
  }

  // ---------------------------------------------------------------- local media + publisher

  async function acquireMedia() {
    if (localStream) return localStream;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showError('media', 'getUserMedia is not available (a secure context is required)');
      return null;
    }
    const video = { width: 1280, height: 720 };
    const attempts = [{ audio: true, video }, { video }, { audio: true }];
    let lastErr = null;
    for (const c of attempts) {
      try {
        localStream = await navigator.mediaDevices.getUserMedia(c);
        if (c !== attempts[0]) showError('media', `publishing ${c.video ? 'video' : 'audio'} only: ${lastErr && lastErr.message}`);
        return localStream;
      } catch (err) {
        lastErr = err;
      }
    }
    showError('media', `no camera/microphone, receive only: ${lastErr && (lastErr.name + ' ' + lastErr.message)}`);
    return null;
  }

  function showLocal(stream) {
    if (!localTile) {
      localTile = makeTile(`${cfg.name} (you)`, true);
      ui.grid.prepend(localTile.tile);
    }
    if (localTile.video.srcObject !== stream) {
      localTile.video.srcObject = stream;
      playVideo(localTile.video, null);
    }
  }

  // Publishes VP8 unless the URL asks for another codec (`?codec=h264`).
  function preferVp8(transceiver) {
    if (typeof transceiver.setCodecPreferences !== 'function') return;
    try {
      const caps = (window.RTCRtpReceiver && RTCRtpReceiver.getCapabilities && RTCRtpReceiver.getCapabilities('video'))
        || (window.RTCRtpSender && RTCRtpSender.getCapabilities && RTCRtpSender.getCapabilities('video'));
      if (!caps || !caps.codecs) return;
      const wanted = 'video/' + cfg.codec;
      const isWanted = (c) => c.mimeType.toLowerCase() === wanted;
      const codecs = caps.codecs.filter(isWanted).concat(caps.codecs.filter((c) => !isWanted(c)));
      if (codecs.some(isWanted)) transceiver.setCodecPreferences(codecs);
    } catch (err) {
      console.warn('setCodecPreferences failed, using the default codec order', err);
    }
  }

  /** Both connections' configuration: the TURN servers `joined` named, and relay-only on
   * `?relay=1`. */
  function rtcConfig(s) {
    return {
      bundlePolicy: 'max-bundle',
      iceServers: s.iceServers || [],
      iceTransportPolicy: cfg.relay ? 'relay' : 'all',
    };
  }

  async function publish(s, stream) {
    const pc = new RTCPeerConnection(rtcConfig(s));
    s.pubPc = pc;
    pc.onicecandidate = (e) => onLocalCandidate(s, 'publisher', e.candidate);
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed' && !s.closed) showError('ice', 'publisher connection failed');
    };
    pc.oniceconnectionstatechange = () => { if (pc.iceConnectionState === 'failed') restartIce(s, false); };
    const audio = stream.getAudioTracks()[0];
    const video = stream.getVideoTracks()[0];
    if (audio) pc.addTransceiver(audio, { direction: 'sendonly', streams: [stream] });
    if (video) {
      let tr;
      try {
        tr = pc.addTransceiver(video, {
          direction: 'sendonly', streams: [stream], sendEncodings: SEND_ENCODINGS.map((e) => ({ ...e })),
        });
      } catch (err) {
        console.warn('simulcast refused, publishing one encoding', err);
        tr = pc.addTransceiver(video, { direction: 'sendonly', streams: [stream] });
      }
      preferVp8(tr);
    }
    try {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      if (s.closed) return;
      send(s, { type: 'offer', sdp: pc.localDescription.sdp, sources: sourcesOf(s) });
      flushCandidates(s, 'publisher');
    } catch (err) {
      if (!s.closed) showError('client', `publisher offer: ${err && err.message || err}`);
    }
  }

  // ---------------------------------------------------------------- screen share

  /** The offer's `sources`: the screen share's section, by mid. */
  function sourcesOf(s) {
    const out = {};
    if (s && s.screen && s.screen.transceiver.mid != null) out[s.screen.transceiver.mid] = 'screen';
    return out;
  }

  /** A new publisher offer (a section added or stopped), once the last one is answered. */
  async function renegotiate(s) {
    const pc = s.pubPc;
    for (let i = 0; i < 100 && pc.signalingState !== 'stable'; i += 1) await new Promise((r) => setTimeout(r, 50));
    await pc.setLocalDescription(await pc.createOffer());
    if (!s.closed) send(s, { type: 'offer', sdp: pc.localDescription.sdp, sources: sourcesOf(s) });
  }

  async function shareScreen(s, given) {
    if (!s || s.closed || !s.pubPc || s.screen) return false;
    const stream = given || await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    const track = stream.getVideoTracks()[0];
    if (!track) return false;
    const transceiver = s.pubPc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
    s.screen = { stream, transceiver };
    track.addEventListener('ended', () => stopShare(s));
    ui.share.textContent = 'Stop sharing';
    await renegotiate(s);
    return true;
  }

  async function stopShare(s) {
    if (!s || !s.screen) return;
    const { stream, transceiver } = s.screen;
    s.screen = null;
    ui.share.textContent = 'Share screen';
    for (const t of stream.getTracks()) t.stop();
    if (s.closed || !s.pubPc) return;
    transceiver.stop();
    await renegotiate(s);
  }

  ui.share.onclick = () => {
    const p = session && session.screen ? stopShare(session) : shareScreen(session);
    Promise.resolve(p).catch((err) => showError('media', `screen share: ${err && err.message || err}`));
  };

  async function onPublisherAnswer(s, msg) {
    const pc = s.pubPc;
    if (!pc || pc.signalingState !== 'have-local-offer') {
      console.warn('answer without a pending publisher offer');
      return;
    }
    try {
      await pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
    } catch (err) {
      if (!s.closed) showError('client', `publisher answer: ${err && err.message || err}`);
    }
  }

  // ---------------------------------------------------------------- ICE

  function onLocalCandidate(s, target, c) {
    if (s.closed) return;
    let init;
    if (c && c.candidate) {
      init = { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex };
    } else {
      // End of candidates (null event, or Chrome's empty-candidate event).
      if (s.endSent[target]) return;
      s.endSent[target] = true;
      const pc = target === 'publisher' ? s.pubPc : s.subPc;
      const first = pc && pc.getTransceivers().find((t) => t.mid != null);
      init = {
        candidate: '',
        sdpMid: (c && c.sdpMid) || (first ? first.mid : '0'),
        sdpMLineIndex: (c && c.sdpMLineIndex != null) ? c.sdpMLineIndex : 0,
      };
    }
    const msg = { type: 'candidate', target, candidate: init };
    if (s.signaled[target]) send(s, msg);
    else s.pending[target].push(msg);
  }

  function flushCandidates(s, target) {
    s.signaled[target] = true;
    for (const m of s.pending[target].splice(0)) send(s, m);
  }

  async function onServerCandidate(s, msg) {
    // Not sent by an ICE-lite server today; accepted for completeness.
    const pc = msg.target === 'subscriber' ? s.subPc : s.pubPc;
    if (!pc || !msg.candidate) return;
    try { await pc.addIceCandidate(msg.candidate); } catch (err) { console.warn('addIceCandidate', err); }
  }

  /**
   * ICE restart of both connections (a network change): the publisher offers with new
   * credentials; the subscriber's restart is the server's (it offers), asked for with
   * `ice_restart`. At most one per 5 s unless `force`.
   */
  function restartIce(s, force = true) {
    if (!s || s.closed || !s.joined) return false;
    const now = Date.now();
    if (!force && s.lastRestart && now - s.lastRestart < 5000) return false;
    s.lastRestart = now;
    api.iceRestarts += 1;
    const pub = s.pubPc;
    if (pub && pub.signalingState === 'stable') {
      s.endSent.publisher = false;
      pub.restartIce();
      (async () => {
        const offer = await pub.createOffer();
        await pub.setLocalDescription(offer);
        if (!s.closed) send(s, { type: 'offer', sdp: pub.localDescription.sdp, sources: sourcesOf(s) });
      })().catch((err) => console.warn('publisher ICE restart', err));
    }
    if (s.subPc) {
      s.endSent.subscriber = false;
      send(s, { type: 'ice_restart' });
    }
    return true;
  }

  // a new network: the old paths are likely gone
  window.addEventListener('online', () => restartIce(session, false));
  if (navigator.connection && navigator.connection.addEventListener) {
    navigator.connection.addEventListener('change', () => restartIce(session, false));
  }

  // ---------------------------------------------------------------- subscriber

  function ensureSubscriber(s) {
    if (s.subPc) return s.subPc;
    const pc = new RTCPeerConnection(rtcConfig(s));
    s.subPc = pc;
    pc.onicecandidate = (e) => onLocalCandidate(s, 'subscriber', e.candidate);
    pc.ontrack = (e) => {
      if (s.closed) return;
      const mid = e.transceiver && e.transceiver.mid;
      const ref = mid != null ? s.midMap[mid] : null;
      if (ref) attachTrack(ref, e.track, mid);
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed' && !s.closed) showError('ice', 'subscriber connection failed');
    };
    pc.oniceconnectionstatechange = () => { if (pc.iceConnectionState === 'failed') restartIce(s, false); };
    return pc;
  }

  async function onSubscriberOffer(s, msg) {
    if (s.closed) return;
    const pc = ensureSubscriber(s);
    s.midMap = msg.tracks && typeof msg.tracks === 'object' ? msg.tracks : {};
    for (const ref of Object.values(s.midMap)) {
      if (!ref || !ref.participant || !ref.track) continue;
      trackOwner.set(ref.track, ref.participant);
      const r = upsertParticipant({ id: ref.participant });
      if (r && !r.published.has(ref.track)) {
        r.published.set(ref.track, { id: ref.track, kind: ref.kind, layers: [] });
        if (ref.kind === 'video') videoTrackChanged(r);
      }
    }
    await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    if (s.closed) return;
    send(s, { type: 'answer', sdp: pc.localDescription.sdp });
    flushCandidates(s, 'subscriber');
    reconcileSubscriber(s);
  }

  /** Makes every tile hold exactly the tracks the subscriber connection receives for it. */
  function reconcileSubscriber(s) {
    const want = new Map(); // participant id -> Map(track id -> {track, mid})
    for (const tr of s.subPc.getTransceivers()) {
      if (tr.mid == null || tr.stopped) continue;
      const dir = tr.currentDirection;
      if (dir !== 'recvonly' && dir !== 'sendrecv') continue;
      const ref = s.midMap[tr.mid];
      if (!ref || !ref.participant || !ref.track) continue;
      if (!want.has(ref.participant)) want.set(ref.participant, new Map());
      want.get(ref.participant).set(ref.track, { track: tr.receiver.track, mid: tr.mid });
    }
    for (const [pid, media] of want) {
      const r = upsertParticipant({ id: pid });
      if (r) setMedia(r, media);
    }
    for (const r of remotes.values()) if (!want.has(r.id)) setMedia(r, new Map());
  }

  // ---------------------------------------------------------------- remote participants

  function newRemote(id) {
    const t = makeTile(id, false);
    const r = {
      id,
      name: id,
      published: new Map(), // track id -> TrackInfo
      media: new Map(), // track id -> {track, mid}: what the tile plays
      videoTrack: null, // server id of the video track the tile shows
      explicitLayer: undefined, // undefined: size-driven; 'q'|'h'|'f': setLayer()
      paused: undefined,
      frames: [],
      lastSize: null,
      sizeTimer: null,
      closed: false,
      ...t,
    };
    t.tile.dataset.participant = id;
    ui.grid.append(t.tile);
    if (window.ResizeObserver) {
      r.ro = new ResizeObserver(() => scheduleSize(r));
      r.ro.observe(r.video);
    }
    startFrameLog(r);
    return r;
  }

  function upsertParticipant(p) {
    if (!p || !p.id || p.id === api.participantId || departed.has(p.id)) return null;
    let r = remotes.get(p.id);
    if (!r) {
      r = newRemote(p.id);
      remotes.set(p.id, r);
    }
    if (p.name) {
      r.name = p.name;
      r.nameEl.textContent = p.name;
    }
    if (Array.isArray(p.tracks)) {
      for (const t of p.tracks) {
        if (!t || !t.id) continue;
        r.published.set(t.id, t);
        trackOwner.set(t.id, p.id);
      }
      videoTrackChanged(r);
    }
    return r;
  }

  function onParticipantLeft(id) {
    if (!id) return;
    departed.add(id);
    if (departed.size > MAX_DEPARTED) departed.delete(departed.values().next().value);
    removeRemote(id);
  }

  function removeRemote(id) {
    const r = remotes.get(id);
    if (!r) return;
    remotes.delete(id);
    r.closed = true;
    clearTimeout(r.sizeTimer);
    if (r.ro) r.ro.disconnect();
    if (r.rvfc != null && r.video.cancelVideoFrameCallback) r.video.cancelVideoFrameCallback(r.rvfc);
    r.video.srcObject = null;
    r.tile.remove();
    for (const [tid, owner] of trackOwner) if (owner === id) trackOwner.delete(tid);
  }

  function onTrackPublished(pid, track) {
    if (!track || !track.id) return;
    const r = upsertParticipant({ id: pid });
    if (!r) return;
    r.published.set(track.id, track);
    trackOwner.set(track.id, pid);
    if (track.kind === 'video') videoTrackChanged(r);
  }

  function onTrackUnpublished(pid, trackId) {
    const owner = pid || trackOwner.get(trackId);
    const r = remotes.get(owner);
    trackOwner.delete(trackId);
    layerByTrack.delete(trackId);
    if (!r) return;
    r.published.delete(trackId);
    if (r.media.has(trackId)) {
      const media = new Map(r.media);
      media.delete(trackId);
      setMedia(r, media);
    }
    videoTrackChanged(r);
  }

  function onLayerChanged(trackId, layer, reason) {
    layerByTrack.set(trackId, layer == null ? null : layer);
    const r = remotes.get(trackOwner.get(trackId));
    if (r && r.videoTrack === trackId) {
      r.layerEl.textContent = layer ? `layer ${layer}` : (reason === 'bandwidth' ? 'paused: your downlink is full' : 'paused');
    }
  }

  /**
   * Dynacast: encode only the simulcast layers some subscriber receives. Not in Firefox: an
   * encoding it turned off did not always come back on (seen in the Firefox test on a loaded
   * machine), so Firefox keeps encoding every layer.
   */
  async function onPublishLayers(s, active) {
    const pc = s.pubPc;
    if (!pc || !Array.isArray(active) || /Firefox\//.test(navigator.userAgent)) return;
    for (const sender of pc.getSenders()) {
      if (!sender.track || sender.track.kind !== 'video') continue;
      const params = sender.getParameters();
      if (!params.encodings || params.encodings.length < 2) continue;
      let changed = false;
      for (const e of params.encodings) {
        const on = active.includes(e.rid);
        if (e.rid && e.active !== on) { e.active = on; changed = true; }
      }
      if (!changed) continue;
      try {
        await sender.setParameters(params);
      } catch (err) {
        console.warn('dynacast: setParameters failed', err);
      }
    }
    api.activeLayers = active.slice();
  }

  /** Marks the tiles of who speaks, and the dominant speaker's. */
  function onActiveSpeakers(msg) {
    const speakers = Array.isArray(msg.speakers) ? msg.speakers : [];
    api.activeSpeakers = { speakers, dominant: msg.dominant || null };
    const speaking = new Set(speakers.map((x) => x.participant));
    const mark = (tile, pid) => {
      if (!tile) return;
      tile.classList.toggle('speaking', speaking.has(pid));
      tile.classList.toggle('dominant', pid === msg.dominant);
    };
    for (const r of remotes.values()) mark(r.tile, r.id);
    if (localTile) mark(localTile.tile, api.participantId);
  }

  /** The server's estimate of this client's downlink. */
  function onBandwidth(bps) {
    api.downlinkBps = bps;
    if (ui.bandwidth) ui.bandwidth.textContent = `downlink ~${Math.round(bps / 1000)} kbit/s`;
  }

  function attachTrack(ref, track, mid) {
    const r = upsertParticipant({ id: ref.participant });
    if (!r) return;
    const cur = r.media.get(ref.track);
    if (cur && cur.track === track) return;
    const media = new Map(r.media);
    // One transceiver carries one track: drop whatever it carried before.
    for (const [tid, m] of media) if (m.mid === mid) media.delete(tid);
    media.set(ref.track, { track, mid });
    setMedia(r, media);
  }

  function setMedia(r, media) {
    let same = media.size === r.media.size;
    if (same) {
      for (const [tid, m] of media) {
        const cur = r.media.get(tid);
        if (!cur || cur.track !== m.track) { same = false; break; }
      }
    }
    r.media = media;
    if (same) return;
    // its audio, and one video: a screen share before a camera
    const shown = pickVideoTrack(r);
    const tracks = [...media].filter(([tid, m]) => m.track.kind !== 'video' || tid === shown).map(([, m]) => m.track);
    if (tracks.length === 0) {
      r.video.srcObject = null;
    } else {
      // A new MediaStream each time: adding tracks to a playing srcObject is not reliable everywhere.
      r.video.srcObject = new MediaStream(tracks);
      playVideo(r.video, r.tile);
    }
    videoTrackChanged(r);
  }

  function isScreen(r, tid) {
    const t = tid && r.published.get(tid);
    return !!t && t.source === 'screen';
  }

  /** The server id of the video track to show (and size) for this participant: its screen
   * share if it shares, else its camera; what is received before what is only announced. */
  function pickVideoTrack(r) {
    const received = [...r.media].filter(([, m]) => m.track.kind === 'video').map(([tid]) => tid);
    const announced = [...r.published.values()].filter((t) => t.kind === 'video').map((t) => t.id);
    for (const list of [received, announced]) {
      const screen = list.find((tid) => isScreen(r, tid));
      if (screen) return screen;
      if (list.length) return list[0];
    }
    return null;
  }

  function videoTrackChanged(r) {
    const tid = pickVideoTrack(r);
    r.tile.classList.toggle('screen', isScreen(r, tid));
    if (tid === r.videoTrack) return;
    r.videoTrack = tid;
    r.lastSize = null;
    const layer = tid ? layerByTrack.get(tid) : undefined;
    r.layerEl.textContent = layer ? `layer ${layer}` : '';
    if (!tid) return;
    // Re-apply what was asked for this participant to the (new) track.
    if (r.explicitLayer !== undefined) sendCurrent({ type: 'subscription', track: tid, layer: r.explicitLayer });
    else scheduleSize(r);
    if (r.paused !== undefined) sendCurrent({ type: 'subscription', track: tid, paused: r.paused });
  }

  function scheduleSize(r) {
    if (r.closed || r.explicitLayer !== undefined) return;
    clearTimeout(r.sizeTimer);
    r.sizeTimer = setTimeout(() => sendSize(r), SIZE_DEBOUNCE_MS);
  }

  function sendSize(r) {
    r.sizeTimer = null;
    if (r.closed || r.explicitLayer !== undefined || !r.videoTrack) return;
    const dpr = window.devicePixelRatio || 1;
    const width = Math.round(r.video.clientWidth * dpr);
    const height = Math.round(r.video.clientHeight * dpr);
    if (!width || !height) return;
    const last = r.lastSize;
    if (last && last.track === r.videoTrack && last.width === width && last.height === height) return;
    if (sendCurrent({ type: 'subscription', track: r.videoTrack, width, height })) {
      r.lastSize = { track: r.videoTrack, width, height };
    }
  }

  // ---------------------------------------------------------------- frame log

  function pushFrame(r, width, height) {
    r.frames.push({ t: performance.now(), width, height });
    if (r.frames.length > MAX_FRAMES) r.frames.splice(0, r.frames.length - MAX_FRAMES);
  }

  function startFrameLog(r) {
    const v = r.video;
    if (typeof v.requestVideoFrameCallback === 'function') {
      const cb = (_now, meta) => {
        if (r.closed) return;
        pushFrame(r, meta.width, meta.height);
        r.rvfc = v.requestVideoFrameCallback(cb);
      };
      r.rvfc = v.requestVideoFrameCallback(cb);
      return;
    }
    // Fallback (older Firefox): watch the decoded frame counter once per animation frame.
    let lastCount = -1;
    const tick = () => {
      if (r.closed) return;
      const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
      const count = q ? q.totalVideoFrames - q.droppedVideoFrames : 0;
      if (count !== lastCount && v.videoWidth) pushFrame(r, v.videoWidth, v.videoHeight);
      lastCount = count;
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }

  function frameLog(pid) {
    const r = remotes.get(pid);
    return r ? r.frames.slice() : [];
  }

  function resetFrameLog(pid) {
    if (pid === undefined) {
      for (const r of remotes.values()) r.frames = [];
      return;
    }
    const r = remotes.get(pid);
    if (r) r.frames = [];
  }

  // ---------------------------------------------------------------- test API

  async function remote() {
    const s = session;
    const inbound = [];
    if (s && s.subPc && !s.closed) {
      try {
        const report = await s.subPc.getStats();
        report.forEach((st) => { if (st.type === 'inbound-rtp') inbound.push(st); });
      } catch (_) { /* closed meanwhile */ }
    }
    const out = [];
    for (const r of remotes.values()) {
      let framesDecoded = 0;
      let audioBytes = 0;
      let videoBytes = 0;
      let frameWidth = 0;
      let frameHeight = 0;
      let framesPerSecond = 0;
      let hasVideo = false;
      let hasAudio = false;
      for (const m of r.media.values()) {
        const kind = m.track.kind;
        if (m.track.readyState === 'live') {
          if (kind === 'video') hasVideo = true;
          else if (kind === 'audio') hasAudio = true;
        }
        const st = inbound.filter((x) => (x.trackIdentifier && x.trackIdentifier === m.track.id)
          || (x.mid != null && x.mid === m.mid));
        for (const x of st) {
          if (kind === 'video') {
            framesDecoded += x.framesDecoded || 0;
            videoBytes += x.bytesReceived || 0;
            frameWidth = Math.max(frameWidth, x.frameWidth || 0);
            frameHeight = Math.max(frameHeight, x.frameHeight || 0);
            framesPerSecond = Math.max(framesPerSecond, x.framesPerSecond || 0);
          } else {
            audioBytes += x.bytesReceived || 0;
          }
        }
      }
      out.push({
        participant: r.id,
        name: r.name,
        trackIds: [...r.media.keys()],
        hasVideo,
        hasAudio,
        videoWidth: r.video.videoWidth || frameWidth,
        videoHeight: r.video.videoHeight || frameHeight,
        framesDecoded,
        audioBytes,
        layer: r.videoTrack && layerByTrack.has(r.videoTrack) ? layerByTrack.get(r.videoTrack) : null,
        publishedTrackIds: [...r.published.keys()],
        videoTrack: r.videoTrack,
        frameWidth,
        frameHeight,
        framesPerSecond,
        videoBytes,
        explicitLayer: r.explicitLayer === undefined ? null : r.explicitLayer,
        paused: !!r.paused,
      });
    }
    return out;
  }

  function setLayer(pid, layer) {
    const r = remotes.get(pid);
    if (!r) throw new Error(`unknown participant ${pid}`);
    if (layer !== null && !LAYERS.includes(layer)) throw new Error(`bad layer ${layer}`);
    clearTimeout(r.sizeTimer);
    r.sizeTimer = null;
    if (r.videoTrack) sendCurrent({ type: 'subscription', track: r.videoTrack, layer });
    if (layer === null) {
      r.explicitLayer = undefined;
      r.lastSize = null;
      sendSize(r);
    } else {
      r.explicitLayer = layer;
    }
    return r.videoTrack;
  }

  function setPaused(pid, paused) {
    const r = remotes.get(pid);
    if (!r) throw new Error(`unknown participant ${pid}`);
    r.paused = !!paused;
    if (r.videoTrack) sendCurrent({ type: 'subscription', track: r.videoTrack, paused: r.paused });
    return r.videoTrack;
  }

  function leave() {
    left = true;
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    if (session) closeSession(session, true);
    if (localStream) for (const t of localStream.getTracks()) t.stop();
    localStream = null;
    if (localTile) {
      localTile.tile.remove();
      localTile = null;
    }
    if (rejectJoined) rejectJoined(new Error('left'));
    setStatus('left');
    ui.leave.hidden = true;
    ui.share.hidden = true;
    ui.rejoin.hidden = false;
  }

  // ---------------------------------------------------------------- start

  ui.leave.onclick = () => leave();
  ui.rejoin.onclick = () => location.reload();
  window.addEventListener('pagehide', () => {
    if (session && !session.closed) closeSession(session, true);
  });

  if (cfg.room && cfg.name) {
    startSession(0);
  } else {
    ui.form.hidden = false;
    if (cfg.room) ui.form.elements.room.value = cfg.room;
    if (cfg.name) ui.form.elements.name.value = cfg.name;
    ui.form.onsubmit = (ev) => {
      ev.preventDefault();
      const q = new URLSearchParams(location.search);
      q.set('room', ui.form.elements.room.value.trim());
      q.set('name', ui.form.elements.name.value.trim());
      location.search = q.toString(); // reload: the URL then rejoins by itself
    };
  }
})();

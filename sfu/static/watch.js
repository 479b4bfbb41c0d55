// A WHEP player: /watch?room=R[&source=NAME_OR_ID][&token=T]. It offers to receive one audio
// and one video section, POSTs the offer to /whep/R and plays what comes back; leaving the
// page ends the session (DELETE). Muted until the viewer unmutes (browsers' autoplay rules).
'use strict';

(async () => {
  const q = new URLSearchParams(location.search);
  const room = q.get('room') || 'demo';
  const source = q.get('source');
  const token = q.get('token');
  const status = document.getElementById('status');
  const video = document.getElementById('video');
  const state = (window.sfuWatch = { room, connection: 'new', location: null, error: null, pc: null });
  const say = (text) => { status.textContent = text; };

  const pc = new RTCPeerConnection();
  state.pc = pc;
  pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.addTransceiver('video', { direction: 'recvonly' });
  const stream = new MediaStream();
  pc.ontrack = (e) => {
    stream.addTrack(e.track);
    video.srcObject = stream;
  };
  pc.onconnectionstatechange = () => {
    state.connection = pc.connectionState;
    say(pc.connectionState === 'connected' ? `watching ${room}` : pc.connectionState);
  };
  await pc.setLocalDescription(await pc.createOffer());
  // the offer carries the candidates: no trickle needed (give gathering a moment)
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
    setTimeout(resolve, 2000);
  });
  const headers = { 'Content-Type': 'application/sdp' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const url = `/whep/${encodeURIComponent(room)}${source ? `?source=${encodeURIComponent(source)}` : ''}`;
  const res = await fetch(url, { method: 'POST', headers, body: pc.localDescription.sdp });
  if (res.status !== 201) throw new Error(`${res.status} ${(await res.text()).trim()}`);
  state.location = res.headers.get('Location');
  await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
  window.addEventListener('pagehide', () => {
    if (state.location) fetch(state.location, { method: 'DELETE', keepalive: true });
  });
})().catch((e) => {
  window.sfuWatch.error = String(e.message || e);
  document.getElementById('status').textContent = `cannot play: ${window.sfuWatch.error}`;
});

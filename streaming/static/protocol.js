// Protocol v1 framing (see streaming/PROTOCOL.md): the 13-byte media header and close-code wording.

export const PROTOCOL_VERSION = 1;
export const KIND_VIDEO = 1;
export const KIND_AUDIO = 2;
export const KIND_MIC = 3;
export const HEADER_BYTES = 13;
export const MIC_RATE = 16000;

/** Splits a binary server message into {kind, turn, pts, payload}; payload is a view, not a copy. */
export function parseMedia(buffer) {
  const view = new DataView(buffer);
  return {
    kind: view.getUint8(0),
    turn: view.getUint32(1),
    // Sample counts stay far below 2^53 (that is 12 000 years at 24 kHz), so a Number is exact.
    pts: Number(view.getBigUint64(5)),
    payload: new Uint8Array(buffer, HEADER_BYTES),
  };
}

/** A microphone message: header (kind 3, turn 0, pts = samples since audio_start) + PCM16 LE. */
export function packMic(pts, pcm16) {
  const out = new ArrayBuffer(HEADER_BYTES + pcm16.byteLength);
  const view = new DataView(out);
  view.setUint8(0, KIND_MIC);
  view.setUint32(1, 0);
  view.setBigUint64(5, BigInt(pts));
  // Int16Array is little-endian on every platform a browser runs on (WebAssembly requires it too).
  new Uint8Array(out, HEADER_BYTES).set(new Uint8Array(pcm16.buffer, pcm16.byteOffset, pcm16.byteLength));
  return out;
}

const CLOSE_MEANINGS = {
  1000: "the session ended normally",
  1001: "the server is shutting down (or the page is going away)",
  1006: "the connection was lost (server unreachable, stopped, or the network dropped)",
  1008: "the server closed the connection (policy: the client was too slow or misbehaved)",
  1009: "a message was too big",
  1011: "the server hit an internal error",
  4400: "the first message was not a valid hello",
  4401: "the access token is missing or wrong — open the URL the server printed (with ?token=…)",
  4408: "no hello was sent in time",
  4426: "this page speaks an unsupported protocol version",
  4503: "the server is full — too many sessions are running, try again later",
};

export function closeMeaning(code) {
  return CLOSE_MEANINGS[code] || "the connection closed";
}

// The websocket: says hello, then hands JSON events and parsed media messages to the page, counting
// bytes for the bitrate display.

import { PROTOCOL_VERSION, parseMedia } from "./protocol.js";

export function socketUrl(token) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = token ? `?token=${encodeURIComponent(token)}` : "";
  return `${scheme}//${location.host}/ws${query}`;
}

export class Connection {
  /**
   * @param hello fields of the hello message besides type/protocol ({codecs, persona?})
   * @param handlers {onEvent(msg), onMedia(media), onClose(code, reason)}
   */
  constructor(url, hello, handlers) {
    this.handlers = handlers;
    this.bytes = 0;
    this.closed = false;
    this.ws = new WebSocket(url);
    this.ws.binaryType = "arraybuffer";
    this.ws.onopen = () => this.send({ type: "hello", protocol: PROTOCOL_VERSION, ...hello });
    this.ws.onmessage = (e) => this.onMessage(e.data);
    this.ws.onclose = (e) => {
      if (this.closed) return;
      this.closed = true;
      handlers.onClose(e.code, e.reason);
    };
  }

  onMessage(data) {
    if (typeof data === "string") {
      this.bytes += data.length;
      let msg;
      try {
        msg = JSON.parse(data);
      } catch {
        return;
      }
      this.handlers.onEvent(msg);
      return;
    }
    this.bytes += data.byteLength;
    this.handlers.onMedia(parseMedia(data));
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  send(msg) {
    if (this.isOpen) this.ws.send(JSON.stringify(msg));
  }

  sendBinary(buffer) {
    if (this.isOpen) this.ws.send(buffer);
  }

  close() {
    this.closed = true;
    this.ws.close(1000);
  }
}

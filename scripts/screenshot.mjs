// Screenshots of a live page after it has run for a while in real time, through the Chrome
// DevTools Protocol of an already started headless Chromium (no npm packages).
//   node --experimental-websocket scripts/screenshot.mjs DEBUG_PORT SECONDS WIDTH HEIGHT URL FILE.png
import { writeFileSync } from "node:fs";

const [port, seconds, width, height, url, file] = process.argv.slice(2);
const target = await (await fetch(`http://127.0.0.1:${port}/json/new?about:blank`, { method: "PUT" })).json();
const socket = new WebSocket(target.webSocketDebuggerUrl);
await new Promise((resolve) => socket.addEventListener("open", resolve));
let id = 0;
const pending = new Map();
socket.addEventListener("message", (event) => {
  const message = JSON.parse(event.data);
  if (pending.has(message.id)) {
    pending.get(message.id)(message);
    pending.delete(message.id);
  }
});
const send = (method, params = {}) =>
  new Promise((resolve) => {
    pending.set(++id, resolve);
    socket.send(JSON.stringify({ id, method, params }));
  });
await send("Emulation.setDeviceMetricsOverride", { width: Number(width), height: Number(height), deviceScaleFactor: 1, mobile: false });
await send("Page.navigate", { url });
await new Promise((resolve) => setTimeout(resolve, Number(seconds) * 1000));
const shot = await send("Page.captureScreenshot", { format: "png" });
writeFileSync(file, Buffer.from(shot.result.data, "base64"));
socket.close();

"use strict";
// duetto's service worker: shows a notification for each push the server sends.
// The payload names the sender and a count; a body only if the operator allows.

self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (error) {
    data = {};
  }
  const count = Number(data.count) || 1;
  const sender = typeof data.sender === "string" ? data.sender : "someone";
  const title =
    count === 1 ? `New message from ${sender}` : `${count} new messages from ${sender}`;
  const options = {
    body: typeof data.body === "string" ? data.body : "Open duetto to read it.",
    // One notification per conversation: a newer push replaces the older.
    tag: data.conversation_id || "duetto",
    data: { conversation_id: data.conversation_id, sender },
  };
  event.waitUntil(self.registration.showNotification(title, options));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(
    self.clients.matchAll({ type: "window" }).then((windows) => {
      const open = windows.find((w) => new URL(w.url).pathname === "/");
      return open ? open.focus() : self.clients.openWindow("/");
    }),
  );
});

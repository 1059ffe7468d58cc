/*
 * bench/lib/haraka-nodelay — preloaded into Haraka (node --require) for the
 * benchmark's "TCP_NODELAY" variant: Nagle's algorithm off on every socket
 * Haraka accepts or opens, so its pipelined replies and its forwarding to the
 * next hop do not wait for delayed ACKs. Changes nothing else.
 */
const net = require('node:net');

const emit = net.Server.prototype.emit;
net.Server.prototype.emit = function (event, socket, ...rest) {
  if (event === 'connection' && socket && typeof socket.setNoDelay === 'function') socket.setNoDelay(true);
  return emit.call(this, event, socket, ...rest);
};

const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
  this.setNoDelay(true);
  return connect.apply(this, args);
};

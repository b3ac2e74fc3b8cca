"""Paddle.js in a browser: the DevTools-protocol client, the local page run and the page run on an SSH host."""

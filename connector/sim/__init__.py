"""The simulated WhatsApp service (`wa-keeper sim-server`) and its wire format.

Tests and the demo drive it over HTTP; sim workers log in over its websocket.
Nothing here imports neonize.
"""

"""`wa-keeper demo`: the whole local stack with simulated accounts and a narrated fault script.

- `processes`: child processes started, stopped and checked by pid (no broad kills);
- `emulators`: the Firebase emulator suite, started here or reused from the environment;
- `stack`: sim-server, two connectors, the control calls the script needs;
- `observe`: what the demo sees (account documents, lifecycle events);
- `script`: the fault steps as data, the pure judge, and the runner;
- `dashboard` and `report`: the live table and the final one.
"""

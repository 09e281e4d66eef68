"""The application layer (ARCHITECTURE §2): use cases that load state, ask a pure decider in
``ductile/commands/`` and append through the writer's transaction. Ids and time are made here."""

"""The layer every analysis stands on: the Probe (any Flax model as pure functions), input
checks, the jaxpr interpreter and the compile policy. Imports nothing above it."""

"""Model evaluation: `metrics` (pure functions), `scoring` (every model of a split scored),
`plots` and `report` (the files written); `evaluate` is the step that wires them."""

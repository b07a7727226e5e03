"""Config, Inputs and Outputs of each built-in component (importable without torch or Ray)."""

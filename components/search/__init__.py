"""Training-free student search (DisWOT): a library, imported like the model zoo.

- `diswot`: the score of a candidate against a teacher on one batch (`DiswotScorer`).
- `candidates`: candidates of a `SearchSpace` for one dataset, sized on the zoo and capped.
- `evolution`: regularised (aging) evolution and random search, given a batch scoring callable.
- `correlation`: Kendall tau / Spearman rho against measured accuracy, and a scatter plot (PNG).
- `student_search`: the step; `parallel`, `ranking`, `validation`: its parts.

Nothing is re-exported here: importing the step module for its config stays light.
"""

"""Training-free student search (DisWOT): a library, imported like the model zoo.

- `diswot`: the score of a candidate against a teacher on one batch (`DiswotScorer`).
- `candidates`: candidates of a `SearchSpace` for one dataset, sized from the zoo's layer plans
  and capped (torch-free: `kdorch validate` checks the caps with it).
- `evolution`: regularised (aging) evolution and random search, given a batch scoring callable.
- `correlation`: Kendall tau / Spearman rho against measured accuracy, and a scatter plot (PNG).
- `choose`: a whole search as the step runs it, from `parallel`, `ranking`, `validation`.
- `student_search`: the step.

Nothing is re-exported here: importing the step module for its config stays light.
"""

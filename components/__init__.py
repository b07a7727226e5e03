"""kdorch's built-in components. Each module holds one component; see `BUILTIN` for the keys.

The registry imports a module only when its key is used.
"""

#: key -> "module:Class" of every built-in component.
BUILTIN: dict[str, str] = {
    "dataset": "components.dataset:DatasetComponent",
    "train": "components.train:TrainComponent",
    "teacher_inference": "components.teacher_inference:TeacherInference",
    "distill": "components.distill:Distill",
    "evaluate": "components.evaluate:EvaluateComponent",
    "tune": "components.tune:Tune",
    "student_search": "components.student_search:StudentSearch",
    "aggregator": "components.aggregator:AggregatorComponent",
    "meta_distill": "components.meta_distill:MetaDistill",
}

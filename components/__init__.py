"""kdorch's built-in components. Each module holds one component; see `BUILTIN` for the keys.

The registry imports a module only when its key is used.
"""

#: key -> "module:Class" of every built-in component.
BUILTIN: dict[str, str] = {
    "dataset": "components.data.dataset:DatasetComponent",
    "train": "components.training.train:TrainComponent",
    "import_model": "components.models.import_model:ImportModel",
    "teacher_inference": "components.inference.teacher_inference:TeacherInference",
    "distill": "components.training.distill:Distill",
    "evaluate": "components.evaluation.evaluate:EvaluateComponent",
    "tune": "components.tuning.tune:Tune",
    "student_search": "components.search.student_search:StudentSearch",
    "aggregator": "components.metadmoe.aggregator:AggregatorComponent",
    "meta_distill": "components.metadmoe.meta_distill:MetaDistill",
    "corpus": "components.text.corpus:CorpusComponent",
    "tokenizer": "components.text.tokenizer:TokenizerComponent",
    "pack_tokens": "components.text.pack_tokens:PackTokens",
    "lm_model": "components.lm.lm_model:LMModel",
    "lm_inference": "components.lm.lm_inference:LMInference",
    "lm_evaluate": "components.lm.lm_evaluate:LMEvaluate",
    "seqkd": "components.lm.seqkd:SeqKD",
}

"""The schema of ``params.yaml``, validated by the ``validate`` stage and again at the start of every stage.

An unknown key, a misspelled architecture or a bad value stops it at once with a
message that names the key and what is allowed. Under DVC the ``validate`` stage,
which depends on every param and precedes every other stage, does this before DVC
deletes any stage's outputs (stages/validate.py).
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ARCHITECTURES = ("splade", "inference-free-splade", "csr")
BUILTIN_BASE_MODEL = "builtin"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# a model id as the Hub resolves it: with a namespace (``ltg/norbert4-base``) or without one (``bert-base-uncased``)
HUB_MODEL_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
RESERVED_TASK_LABELS = ("test", "dev")  # the prepared splits' labels in metrics/eval.json and the model card
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or does not match the schema."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]


class SourceSpec(Strict):
    """One entry of ``data.sources``: where rows come from and how to read them."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][\w.-]*$")]
    path: str = Field(description="hub dataset id, or a local file or folder (jsonl, json, parquet, csv, BEIR folder)")
    revision: str | None = None
    subset: str | None = None
    splits: dict[Literal["train", "dev", "test"], str] | None = None
    columns: dict[Literal["query", "positive", "negative", "title"], str] | None = None
    filter: dict[str, list[Any]] | None = None
    max_samples: PositiveInt | None = None

    @field_validator("splits")
    @classmethod
    def _some_split_named(cls, splits):
        if splits is not None and not splits:
            raise ValueError("splits must map at least one of train, dev, test to a split of the source")
        return splits

    @field_validator("columns")
    @classmethod
    def _needs_query_and_positive(cls, columns):
        if columns is not None and not {"query", "positive"} <= set(columns):
            raise ValueError("columns must map at least 'query' and 'positive' (and optionally 'negative', 'title')")
        return columns


class SplitParams(Strict):
    dev: Fraction = 0.1
    test: Fraction = 0.25
    seed: int = 13

    @model_validator(mode="after")
    def _leave_training_data(self):
        if self.dev + self.test >= 0.9:
            raise ValueError(f"dev + test = {self.dev + self.test:.2f} leaves almost nothing to train on; keep it below 0.9")
        return self


class DataParams(Strict):
    sources: Annotated[list[SourceSpec], Field(min_length=1)]
    split: SplitParams = SplitParams()
    min_chars: Annotated[int, Field(ge=1)] = 3
    max_chars: PositiveInt = 8000
    sampling: Literal["round_robin", "proportional"] = "proportional"
    # other passages of a source added to its dev/test corpora: "all", a count, or 0 for none
    distractors: Literal["all"] | Annotated[int, Field(ge=0)] = "all"

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources):
        names = [s.name for s in sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)}")
        return sources


class ModelParams(Strict):
    base_model: str = BUILTIN_BASE_MODEL
    revision: str | None = None
    trust_remote_code: bool = False
    architecture: Literal["splade", "inference-free-splade", "csr"] = "splade"

    @field_validator("base_model")
    @classmethod
    def _builtin_folder_or_hub_id(cls, base_model):
        if base_model == BUILTIN_BASE_MODEL or Path(base_model).exists():
            return base_model
        if not HUB_MODEL_ID.match(base_model) or base_model.startswith("."):
            raise ValueError("neither 'builtin', an existing local folder nor a hub model id such as 'ltg/norbert4-base'")
        return base_model

    @model_validator(mode="after")
    def _pin_remote_code(self):
        if self.base_model == BUILTIN_BASE_MODEL or Path(self.base_model).exists():
            return self
        # every hub id, with or without a namespace: remote code from the Hub runs only at a pinned commit
        if self.trust_remote_code and not (self.revision and COMMIT_SHA.match(self.revision)):
            raise ValueError(
                f"base_model {self.base_model!r} is a hub id and trust_remote_code is true, so model.revision must pin "
                f"a 40-character commit sha (got {self.revision!r}): remote code runs on your machine"
            )
        return self


class BuiltinParams(Strict):
    """The tiny NorBERT4-style base model that ``patch`` builds when ``model.base_model`` is ``builtin``."""

    vocab_size: Annotated[int, Field(ge=500, le=60000)] = 6000
    hidden_size: Annotated[int, Field(ge=16)] = 128
    intermediate_size: Annotated[int, Field(ge=16)] = 320
    num_layers: Annotated[int, Field(ge=1, le=24)] = 2
    num_attention_heads: PositiveInt = 4
    max_length: Annotated[int, Field(ge=32, le=2048)] = 256
    pretrain_epochs: Annotated[float, Field(gt=0)] = 6
    pretrain_batch_size: PositiveInt = 32
    pretrain_learning_rate: Annotated[float, Field(gt=0)] = 1e-3
    # the output-head calibration after pre-training (norsparse/base_model/builtin.py: calibrate_output_head)
    absent_weight: Annotated[float, Field(gt=0)] = 100.0  # cost of a token active in a text that lacks it
    idf_scale: Annotated[float, Field(ge=0)] = 1.0  # present tokens weigh idf_scale * sqrt(IDF); 0: all weigh ~1
    # then a SPLADE-shaped regression onto each text's own tokens at sqrt(BM25) weights (regress_lexical)
    lexical_steps: Annotated[int, Field(ge=0)] = 0
    lexical_learning_rate: Annotated[float, Field(gt=0)] = 3e-3
    lexical_absent_weight: Annotated[float, Field(ge=0)] = 0.03  # cost of a token active in a text that lacks it
    # then a per-token scale and shift of the head that best fit the same targets (refit_output_head)
    head_refit: bool = False
    refit_absent_weight: Annotated[float, Field(ge=0)] = 0.1  # cost of a token active in a text that lacks it
    seed: int = 42

    @model_validator(mode="after")
    def _heads_divide_hidden(self):
        if self.hidden_size % self.num_attention_heads or (self.hidden_size // self.num_attention_heads) % 2:
            raise ValueError("hidden_size must split into num_attention_heads heads of even size")
        return self


class PatchParams(Strict):
    remove_soft_cap: bool = True
    probe_text: str = "Hva er hovedstaden i Norge? Oslo er den største byen i landet."


class SpladeParams(Strict):
    learning_rate: Annotated[float, Field(gt=0)] = 2e-5
    query_regularizer_weight: Annotated[float, Field(ge=0)] = 5e-5
    document_regularizer_weight: Annotated[float, Field(ge=0)] = 3e-5
    pooling_strategy: Literal["max", "sum"] = "max"


class InferenceFreeSpladeParams(Strict):
    learning_rate: Annotated[float, Field(gt=0)] = 2e-5
    static_learning_rate: Annotated[float, Field(gt=0)] = 1e-3
    query_regularizer_weight: Annotated[float, Field(ge=0)] = 0.0
    document_regularizer_weight: Annotated[float, Field(ge=0)] = 3e-4


class CsrParams(Strict):
    learning_rate: Annotated[float, Field(gt=0)] = 4e-5
    k: PositiveInt = 32
    k_aux: PositiveInt = 64
    hidden_multiplier: PositiveInt = 4
    beta: Annotated[float, Field(ge=0)] = 0.1
    gamma: Annotated[float, Field(ge=0)] = 1.0


class TrainParams(Strict):
    seed: int = 42
    epochs: Annotated[float, Field(gt=0)] = 4
    max_steps: int = Field(default=-1, ge=-1, description="-1: run the full epochs")
    batch_size: PositiveInt = 16
    gradient_accumulation_steps: PositiveInt = 1
    max_seq_length: Annotated[int, Field(ge=16)] = 256
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.1
    eval_steps: PositiveInt = 40
    save_steps: int = Field(default=0, ge=0, description="checkpoint every N steps (0: every eval_steps)")
    select_best: bool = True  # keep the checkpoint with the best dev NDCG@10 (load_best_model_at_end)
    device: Literal["auto", "cuda", "mps", "cpu"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    gradient_checkpointing: bool = False
    deterministic: bool = True
    dataloader_num_workers: Annotated[int, Field(ge=0)] = 0
    keep_checkpoints: Annotated[int, Field(ge=0)] = 0  # a finished run keeps its last N checkpoints (0: none)
    nproc_per_node: PositiveInt = 1  # above 1: the train stage relaunches itself under torchrun (DDP)
    gather_across_devices: bool = False  # in-batch negatives from every process (DDP), not only its own
    splade: SpladeParams = SpladeParams()
    inference_free_splade: InferenceFreeSpladeParams = Field(
        default=InferenceFreeSpladeParams(), alias="inference-free-splade"
    )
    csr: CsrParams = CsrParams()

    @model_validator(mode="after")
    def _best_needs_aligned_saves(self):
        if self.select_best and self.save_steps and self.save_steps % self.eval_steps:
            raise ValueError(f"select_best needs save_steps ({self.save_steps}) to be a multiple of eval_steps ({self.eval_steps})")
        return self


class CalibrateParams(Strict):
    max_ndcg_drop: Annotated[float, Field(ge=0, le=1)] = 0.01
    max_empty_fraction: Annotated[float, Field(ge=0, le=1)] = 0.01
    thresholds: Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=1)] = [
        0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0,
    ]
    add_quantile_thresholds: bool = True
    refine_steps: Annotated[int, Field(ge=0, le=30)] = 8  # bisection steps past the grid, towards the budget's edge
    batch_size: PositiveInt = 32


class HybridParams(Strict):
    """BM25 + model fusion (ranx); the fusion weights are tuned on the dev split."""

    enabled: bool = True
    method: Literal["wsum", "rrf", "wmnz", "wmax", "wmin"] = "wsum"
    norm: Literal["min-max", "max", "sum", "zmuv", "rank", "borda"] = "min-max"


class MtebTaskParams(Strict):
    """A named mteb task; ``subsets`` null: its Norwegian subsets (nob, nno, nor), or the task itself if it has none."""

    name: Annotated[str, Field(min_length=1)]
    subsets: list[str] | None = None


class EvaluateParams(Strict):
    tasks: list[str] = Field(default_factory=list, description="extra local BEIR folders to evaluate on")
    mteb_tasks: list[MtebTaskParams] = Field(default_factory=list, description="named mteb tasks (from the Hub or its cache)")

    @field_validator("mteb_tasks", mode="before")
    @classmethod
    def _names_alone(cls, value):
        """``- NorQuadRetrieval`` is short for ``- {name: NorQuadRetrieval}``."""
        return [{"name": v} if isinstance(v, str) else v for v in value] if isinstance(value, list) else value
    batch_size: PositiveInt = 32
    compare_base_model: bool = True
    hybrid: HybridParams = HybridParams()

    @field_validator("tasks")
    @classmethod
    def _distinct_labels(cls, tasks):
        """A task is reported under its folder's name: it must not shadow the test/dev splits or another task."""
        seen: dict[str, str] = {}
        for folder in tasks:
            label = Path(folder).name
            if label in RESERVED_TASK_LABELS:
                raise ValueError(
                    f"task folder {folder!r} is named {label!r}, which would replace the prepared {label} split in "
                    f"metrics/eval.json and the model card; rename the folder (reserved names: {', '.join(RESERVED_TASK_LABELS)})"
                )
            if label in seen:
                raise ValueError(f"task folders {seen[label]!r} and {folder!r} share the name {label!r}; their results "
                                 "would collide: rename one")
            seen[label] = folder
        return tasks


class PublishParams(Strict):
    push: bool = False
    repo_id: str | None = None
    private: bool = True
    model_name: str | None = None
    license: str = "apache-2.0"
    examples: Annotated[int, Field(ge=0, le=20)] = 3  # test queries shown in the model card with their top passage

    @model_validator(mode="after")
    def _repo_when_pushing(self):
        if self.push and not (self.repo_id and HUB_ID.match(self.repo_id)):
            raise ValueError(f"push is true, so repo_id must be a hub repository id like 'user/name' (got {self.repo_id!r})")
        return self


class Params(Strict):
    data: DataParams
    model: ModelParams = ModelParams()
    builtin: BuiltinParams = BuiltinParams()
    patch: PatchParams = PatchParams()
    train: TrainParams = TrainParams()
    calibrate: CalibrateParams = CalibrateParams()
    evaluate: EvaluateParams = EvaluateParams()
    publish: PublishParams = PublishParams()

    def architecture_params(self) -> SpladeParams | InferenceFreeSpladeParams | CsrParams:
        return {
            "splade": self.train.splade,
            "inference-free-splade": self.train.inference_free_splade,
            "csr": self.train.csr,
        }[self.model.architecture]


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The schema class that holds the field at ``loc`` (for listing allowed keys)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part) or next(
            (f for f in current.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return None
        annotation = field.annotation
        for arg in getattr(annotation, "__args__", ()) or ():
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                annotation = arg
        current = annotation
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def describe_errors(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors():
        loc = item["loc"]
        key = ".".join(str(p) for p in loc)
        if item["type"] == "extra_forbidden":
            parent = _model_at(Params, loc[:-1]) or Params
            allowed = _allowed_keys(parent)
            hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            lines.append(
                f"{source}: unknown key '{key}'"
                + (f" (did you mean '{hint[0]}'?)" if hint else "")
                + f"; allowed keys here: {', '.join(allowed)}"
            )
        elif item["type"] == "literal_error":
            expected = item.get("ctx", {}).get("expected", "")
            lines.append(f"{source}: {key} = {item['input']!r} is not allowed; allowed values: {expected}")
        elif item["type"] == "missing":
            lines.append(f"{source}: required key '{key}' is missing")
        else:
            where = f"{key}: " if key else ""
            message = item["msg"].removeprefix("Value error, ")
            got = "" if isinstance(item["input"], dict) else f" (got {item['input']!r})"  # a whole block: the message says it
            lines.append(f"{source}: {where}{message}{got}")
    return "\n".join(lines)


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of parameter blocks at the top level, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(describe_errors(error, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found; run from the project root or pass --params") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    return parse_params(raw, str(path))

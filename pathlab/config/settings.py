"""The numeric settings of every config group, checked by kind before any data is read.

One schema per group (data, model, loss, optim, scheduler, trainer, callbacks, tta, and the
top-level keys) says what each number is: whole or real, its range, whether null is allowed and
what words stand in for it. Every group gets the same check, so a new option is refused the same
way as an old one (a test fails when a shipped config has a number the schema does not know).
Two things a range cannot see are tried for real on a dummy parameter: the optimiser (torch's own
argument checks) and the learning-rate schedule, stepped through its whole curve, which must keep
the learning rate finite and > 0.

torch and Lightning check most of these too, but deep inside a run (after the data is read, in a
5-30 frame traceback) and some not at all (a negative min_lr_ratio, threads=0 taken as "all").
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch

from pathlab.runtime.errors import ConfigError

SEED_MAX = 2**32 - 1  # numpy's and Lightning's seed range


@dataclass(frozen=True)
class Num:
    """A number setting. kind: int (whole) or float; low/high: bounds (open: strict);
    null: None allowed; words: strings allowed instead (balanced, auto); each: a list of them;
    extra: other allowed values (Lightning's -1); example: what the fix suggests."""

    kind: type = float
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    null: bool = False
    words: tuple[str, ...] = ()
    each: bool = False
    extra: tuple[Any, ...] = ()
    example: str = ""
    why: str = ""
    not_all_zero: bool = False  # a list of weights: at least one must be > 0

    def range_text(self) -> str:
        """'> 0', '>= 1 (a whole number)', 'in [0, 1]', with the words it also takes."""
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            text = f"in {left}{_fmt(self.low)}, {_fmt(self.high)}{right}"
        elif self.low is not None:
            text = f"{'>' if self.low_open else '>='} {_fmt(self.low)}"
        elif self.high is not None:
            text = f"{'<' if self.high_open else '<='} {_fmt(self.high)}"
        else:
            text = "a number"
        text += " (a whole number)" if self.kind is int else ""
        options = [*map(str, self.extra), *self.words] + (["null"] if self.null else [])
        return text + (f", or {' or '.join(options)}" if options else "")


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


FRACTION = Num(float, 0, 1, example="0.05")
NONNEG = Num(float, 0, example="0.0")
POSITIVE_INT = Num(int, 1, example="1")

# The schema: group -> dotted key (inside the group; `*` matches any one key) -> rule.
# "" is the top level of conf/train.yaml.
# loss.weight (CE) and loss.alpha (focal): null, balanced, or one non-negative float per class
CLASS_WEIGHTS = Num(
    float, 0, null=True, words=("balanced",), each=True, not_all_zero=True, example="balanced"
)

SCHEMA: dict[str, dict[str, Num]] = {
    "": {
        "seed": Num(int, 0, SEED_MAX, example="42"),
        "threads": Num(
            int, 1, null=True, example="2", why="threads=null uses every core; 0 is not 'all'"
        ),
    },
    "data": {
        "size": Num(int, 1, example="28"),
        "batch_size": Num(int, 2, example="128", why="BatchNorm needs at least 2 images a batch"),
        "eval_batch_size": Num(int, 1, example="512"),
        "train_limit": Num(int, 1, null=True, example="700"),
        "val_limit": Num(int, 1, null=True, example="100"),
        "test_limit": Num(int, 1, null=True, example="200"),
        "limit_seed": Num(int, 0, example="0"),
        "num_workers": Num(int, 0, example="0"),
        "seed": Num(int, 0, SEED_MAX, example="42"),
        "val_shift_seed": Num(int, 0, SEED_MAX, example="0"),
        "num_classes": Num(int, 1, example="9"),
        "channels": Num(int, 1, 3, example="3"),
        "augment.stain_jitter": Num(float, 0, 1, high_open=True, example="0.05"),
        "augment.brightness": Num(float, 0, 1, high_open=True, example="0.1"),
        "augment.contrast": Num(float, 0, 1, high_open=True, example="0.1"),
        "augment.hue": Num(float, 0, 0.5, high_open=True, example="0.02"),
        "augment.saturation": Num(float, 0, 1, high_open=True, example="0.1"),
        "augment.gamma": Num(float, 0, 1, high_open=True, example="0.1"),
        "augment.gain": Num(float, 0, 1, high_open=True, example="0.05"),
        "augment.translate": Num(int, 0, example="2"),
        # RandStainNA's spread of the template's std (negative narrows it; its paper uses -0.3)
        "augment.randstainna_std_hyper": Num(float, -1, 5, low_open=True, example="-0.3"),
        "augment.randstainna_prob": Num(float, 0, 1, example="1.0"),
        "synthetic.n_train": Num(int, 1, example="6000"),
        "synthetic.n_val": Num(int, 1, example="1000"),
        "synthetic.n_test": Num(int, 1, example="1000"),
        "synthetic.seed": Num(int, 0, SEED_MAX, example="0"),
        "mixing.mixup_alpha": Num(float, 0, example="0.2"),
        "mixing.cutmix_alpha": Num(float, 0, example="1.0"),
        "mixing.prob": FRACTION,
        # data=folder
        "split_fractions.val": Num(float, 0, 1, high_open=True, example="0.1"),
        "split_fractions.test": Num(float, 0, 1, high_open=True, example="0.1"),
        "split_seed": Num(int, 0, SEED_MAX, example="0"),
        "mpp": Num(float, 0, null=True, low_open=True, example="0.5"),
        "decode_workers": Num(int, 1, null=True, example="2"),
    },
    "model": {
        "num_classes": Num(int, 1, example="9"),
        "in_channels": Num(int, 1, 3, example="3"),
        "in_chans": Num(int, 1, 3, example="3"),
        "data_channels": Num(int, 1, 3, example="3"),
        "img_size": Num(int, 1, example="28"),
        "width": Num(int, 1, example="64"),
        "train_stages": Num(int, 0, example="1"),
        "drop_rate": Num(float, 0, 1, high_open=True, example="0.1"),
        "drop_path_rate": Num(float, 0, 1, high_open=True, example="0.1"),
    },
    "loss": {
        "num_classes": Num(int, 1, example="9"),
        "label_smoothing": Num(float, 0, 1, high_open=True, example="0.1"),
        "gamma": Num(float, 0, example="2.0"),
        "weight": CLASS_WEIGHTS,
        "alpha": CLASS_WEIGHTS,
    },
    "optim": {
        "lr": Num(float, 0, low_open=True, example="0.001"),
        "weight_decay": Num(float, 0, example="0.05"),
        "momentum": Num(float, 0, 1, high_open=True, example="0.9"),
        "dampening": FRACTION,
        "betas": Num(float, 0, 1, high_open=True, each=True, example="[0.9,0.999]"),
        "eps": Num(float, 0, low_open=True, example="1e-8"),
        "alpha": Num(float, 0, 1, example="0.99"),  # RMSprop's smoothing
        "backbone_lr_scale": Num(float, 0, example="0.1"),
    },
    "scheduler": {
        "warmup_fraction": FRACTION,
        "min_lr_ratio": Num(
            float, 0, 1, example="0.01", why="the floor is min_lr_ratio x optim.lr"
        ),
        "pct_start": FRACTION,
        "div_factor": Num(float, 0, low_open=True, example="25"),
        "final_div_factor": Num(float, 0, low_open=True, example="1000"),
        "milestones": Num(float, 0, 1, each=True, example="[0.5,0.75]"),
        "gamma": Num(float, 0, 1, low_open=True, example="0.1"),
    },
    "trainer": {
        "max_epochs": Num(int, 1, example="30"),
        "min_epochs": Num(int, 0, null=True, example="1"),
        "max_steps": Num(int, 1, extra=(-1,), example="-1"),
        "num_nodes": Num(int, 1, example="1"),
        "devices": Num(int, 1, words=("auto",), example="1"),
        "log_every_n_steps": Num(int, 1, example="10"),
        "check_val_every_n_epoch": Num(int, 1, null=True, example="1"),
        "accumulate_grad_batches": Num(int, 1, example="1"),
        "gradient_clip_val": Num(float, 0, null=True, example="1.0"),
        "num_sanity_val_steps": Num(int, 0, extra=(-1,), example="2"),
    },
    "callbacks": {
        "*.decay": Num(float, 0, 1, low_open=True, high_open=True, example="0.98"),
        "*.save_top_k": Num(int, 0, extra=(-1,), example="1"),
        "*.every_n_epochs": Num(int, 0, null=True, example="1"),
        "*.every_n_train_steps": Num(int, 0, null=True, example="0"),
        "*.seed": Num(int, 0, SEED_MAX, example="42"),
        "*.bootstrap": Num(int, 0, example="1000"),
        "*.bootstrap_seed": Num(int, 0, SEED_MAX, example="0"),
    },
    "report": {
        "bootstrap": Num(int, 0, example="1000 (0: no intervals)"),
        "seed": Num(int, 0, SEED_MAX, example="0"),
    },
    "tta": {
        "max_images": Num(int, 1, null=True, example="4096"),
    },
}

# pathlab.slide's settings (conf/slide.yaml), checked before the checkpoint or a slide is read
SLIDE_SETTINGS: dict[str, Num] = {
    "batch_size": Num(int, 1, example="256"),
    "workers": Num(int, 0, example="2"),
    "slide.mpp": Num(float, 0, low_open=True, null=True, example="0.25"),
    "slide.model_mpp": Num(float, 0, low_open=True, null=True, example="4.0"),
    "slide.min_tissue": Num(float, 0, 1, example="0.5"),
    "slide.saturation_floor": Num(float, 0, 1, high_open=True, example="0.05"),
}


def check_slide(config: Mapping[str, Any]) -> list[str]:
    """pathlab.slide's numbers against SLIDE_SETTINGS (a plain dict of the slide config)."""
    problems = []
    for key, rule in SLIDE_SETTINGS.items():
        node: Any = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        problem = check_number(key, node, rule)
        if problem:
            problems.append(problem)
    return problems


# Lightning's limit_*_batches and val_check_interval: a share of the batches (0, 1] or a count >= 1
BATCH_SHARES = ("limit_train_batches", "limit_val_batches", "limit_test_batches")

# Keys a group carries for pathlab, not for its `_target_` (popped before it is called).
PATHLAB_KEYS = {"optim": {"backbone_lr_scale"}}


def _leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a nested mapping; lists are leaves."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, node


def rule_for(group: str, key: str) -> Num | None:
    """The schema's rule for `key` of `group` (`*` matches one key segment)."""
    rules = SCHEMA.get(group, {})
    if key in rules:
        return rules[key]
    parts = key.split(".")
    for pattern, rule in rules.items():
        pat = pattern.split(".")
        if len(pat) == len(parts) and all(p in ("*", k) for p, k in zip(pat, parts, strict=True)):
            return rule
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_number(name: str, value: Any, rule: Num) -> str | None:
    """Why `value` does not fit `rule` (None: it fits)."""
    if value is None:
        return (
            None
            if rule.null
            else f"{name}=null is not allowed: use {rule.range_text()}, e.g. {rule.example}."
        )
    if isinstance(value, str) and value in rule.words:
        return None
    if value in rule.extra and _is_number(value):
        return None
    if rule.each and isinstance(value, (list, tuple)):
        one = replace(rule, each=False, null=False, words=())
        for item in value:
            if check_number(name, item, one):
                return (
                    f"{name}={_show(value)} holds {_show(item)}: each value must be "
                    f"{one.range_text()}, e.g. {name}={rule.example}."
                )
        if rule.not_all_zero and value and not any(v > 0 for v in value):
            return (
                f"{name}={_show(value)} is all zeros: no class would count in the loss. Give each "
                f"class a positive weight, or {name}=balanced."
            )
        return None
    fix = f"it must be {rule.range_text()}, e.g. {name}={rule.example}" + (
        f" ({rule.why})" if rule.why else ""
    )
    if not _is_number(value):
        kind = "a whole number" if rule.kind is int else "a number"
        return f"{name}={_show(value)} is not {kind}: {fix}."
    if rule.kind is int and not isinstance(value, int):
        return f"{name}={_show(value)} is not a whole number: {fix}."
    if not math.isfinite(value):
        return f"{name}={_show(value)} is not finite: {fix}."
    low_bad = rule.low is not None and (value <= rule.low if rule.low_open else value < rule.low)
    high_bad = rule.high is not None and (
        value >= rule.high if rule.high_open else value > rule.high
    )
    if low_bad or high_bad:
        return f"{name}={_show(value)} {fix.removeprefix('it ')}."
    return None


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_show(v) for v in value) + "]"
    return "null" if value is None else str(value)


def check_schema(config: Mapping[str, Any]) -> list[str]:
    """Every known numeric setting of every group against its rule."""
    problems = []
    for group in SCHEMA:
        node = config if group == "" else config.get(group)
        if not isinstance(node, Mapping):
            continue
        for key, value in _leaves(node):
            if group == "" and "." in key:
                continue  # the groups' own keys are checked under their group
            if group and key.split(".")[-1] == "seed" and value == config.get("seed"):
                continue  # data.seed, callbacks.*.seed are ${seed}: said once, as seed
            rule = rule_for(group, key)
            if rule is not None:
                problem = check_number(f"{group}.{key}" if group else key, value, rule)
                if problem:
                    problems.append(problem)
    return problems


def unknown_numbers(group: str, node: Mapping[str, Any]) -> list[str]:
    """Numeric settings of a group that the schema has no rule for (a test keeps this empty for
    every shipped config, so a new option gets a rule when it is added)."""
    return [
        key
        for key, value in _leaves(node)
        if (_is_number(value) or (isinstance(value, list) and all(map(_is_number, value))))
        and not key.startswith("_")
        and rule_for(group, key) is None
        and not (group == "trainer" and key in (*BATCH_SHARES, "val_check_interval"))
    ]


def check_data(data: Mapping[str, Any]) -> list[str]:
    """Cross-key checks of the data group: class names vs classes, translation vs image size,
    the shifted val copies' names and severities (data.val_shifts)."""
    problems = []
    if data.get("val_shifts"):
        from pathlab.data.datamodule import val_shift_spec  # lightning's import: only when asked

        try:
            val_shift_spec(data["val_shifts"])
        except ConfigError as exc:
            problems.append(str(exc))
    names, classes = data.get("class_names"), data.get("num_classes")
    if isinstance(names, str):
        problems.append(
            f"data.class_names={names} is one name, not a list; give every class in order, "
            f"e.g. data.class_names=[{names},...] (quoted for the shell)."
        )
    if isinstance(names, (list, tuple)) and _is_number(classes) and len(names) != classes:
        problems.append(
            f"data.class_names has {len(names)} names but data.num_classes={classes} "
            f"({data.get('flag')} has {classes} classes): give one name per class."
        )
    size, augment = data.get("size"), data.get("augment")
    shift = augment.get("translate") if isinstance(augment, Mapping) else None
    if (
        _is_number(size)
        and isinstance(shift, int)
        and not isinstance(shift, bool)
        and shift * 2 >= size
    ):
        problems.append(
            f"data.augment.translate={shift} shifts a {size}-px image by half its width or more; "
            "use e.g. 2."
        )
    return problems


def check_trainer(
    trainer: Mapping[str, Any], gpus: int | None = None
) -> tuple[list[str], list[str]]:
    """Batch shares, and accelerator and strategy against this machine's GPUs.
    Returns (problems, notes): a note says what will run where the settings are legal but easy to
    misread (DDP on CPU processes)."""
    problems, notes = unknown_trainer_arguments(trainer), []
    for key in (*BATCH_SHARES, "val_check_interval"):
        value = trainer.get(key)
        if value is None:
            continue
        what = key.removeprefix("limit_").removesuffix("_batches")
        if _is_number(value) and value == 0 and key != "val_check_interval":
            problems.append(
                f"trainer.{key}=0 runs no {what} batch at all"
                + (
                    ": nothing is validated, so no val metric picks best.ckpt"
                    if what == "val"
                    else ""
                )
                + f". Use a share in (0, 1] or a count >= 1, e.g. trainer.{key}=1.0."
            )
        elif (
            not _is_number(value)
            or value < 0
            or (isinstance(value, float) and value > 1)
            or not math.isfinite(value)
        ):
            problems.append(
                f"trainer.{key}={_show(value)} must be a share of the batches in (0, 1] or a "
                f"whole number of batches >= 1, e.g. trainer.{key}=1.0."
            )
    gpus = torch.cuda.device_count() if gpus is None else gpus
    accelerator = str(trainer.get("accelerator", "auto"))
    strategy = str(trainer.get("strategy", "auto"))
    devices = trainer.get("devices", 1)
    if accelerator in ("gpu", "cuda") and gpus == 0:
        problems.append(
            f"trainer.accelerator={accelerator} (trainer=gpu, or a GPU preset such as "
            "experiment=pathmnist_28/64) needs a GPU and this machine has none "
            "(torch.cuda.is_available() is False). Run it where there is a GPU, or add "
            "trainer.accelerator=cpu to run the same recipe on the CPU (slow; experiment=fast_cpu "
            "is the CPU recipe)."
        )
    elif (
        accelerator in ("gpu", "cuda", "auto")
        and gpus
        and isinstance(devices, int)
        and devices > gpus
    ):
        problems.append(
            f"trainer.devices={devices} but this machine has {gpus} GPU(s); use trainer.devices={gpus}."
        )
    if strategy.startswith("ddp"):
        n = f"{devices} CPU process(es)" if isinstance(devices, int) else "CPU processes"
        if accelerator == "auto" and gpus == 0:
            problems.append(
                f"trainer=ddp found no GPU here: with trainer.accelerator=auto it would start "
                f"{n} (gloo), not GPU ones. Pass trainer.accelerator=cpu to run CPU processes on "
                "purpose, or run it where there are GPUs."
            )
        elif accelerator == "cpu":
            notes.append(
                f"trainer=ddp on the CPU: {n} talking over gloo (data.batch_size is per process)."
            )
    return problems, notes


def unknown_trainer_arguments(trainer: Mapping[str, Any]) -> list[str]:
    """Keys of the trainer group that lightning.Trainer does not take, with the closest name:
    Hydra suggests `+trainer.max_epoch=1` for a typo, and Lightning would refuse it only after
    the data is read, in a 40-line InstantiationException."""
    import difflib
    import inspect

    target = str(trainer.get("_target_", "lightning.pytorch.Trainer"))
    if target not in (
        "lightning.pytorch.Trainer",
        "lightning.Trainer",
        "pytorch_lightning.Trainer",
    ):
        return []  # a Trainer of the user's own: its own arguments
    from lightning.pytorch import Trainer

    known = set(inspect.signature(Trainer.__init__).parameters) - {"self"}
    problems = []
    for key in sorted(k for k in trainer if not str(k).startswith("_") and k not in known):
        close = difflib.get_close_matches(str(key), sorted(known), n=1)
        fix = (
            f"did you mean trainer.{close[0]}=...?"
            if close
            else "see lightning.Trainer's arguments."
        )
        problems.append(f"trainer.{key} is not an argument of lightning's Trainer; {fix}")
    return problems


def check_model(model: Mapping[str, Any]) -> list[str]:
    """A frozen network must come from somewhere: a linear probe of random weights trains a head
    on noise features, at chance level."""
    if model.get("finetune") == "linear_probe" and not model.get("pretrained"):
        return [
            "model.finetune=linear_probe trains only the head, on a frozen network, and "
            "model.pretrained is not set: the frozen network would be random (chance level). "
            "Pass model.pretrained=FILE (or true for timm's weights), or model.finetune=full."
        ]
    return []


def check_cv(cv: Mapping[str, Any]) -> list[str]:
    """cv.fold picks one of cv.folds folds; without cv.folds the run trains on the official split
    and would record a fold it never used."""
    fold = cv.get("fold")
    if cv.get("folds") is None and fold not in (None, 0):
        return [
            f"cv.fold={fold} has no folds to choose from: cv.folds is not set. Pass cv.folds=K "
            f"(e.g. cv.folds=5 cv.fold={fold}) for K-fold cross-validation, or leave cv.fold out."
        ]
    return []


# the D4 views each symmetry keeps a label under (pathlab.evaluation.tta.VIEWS names them)
VIEWS_KEPT = {"none": {"none"}, "flip": {"none", "flip"}, "d4": {"none", "flip", "rot4", "d4"}}


def check_tta(tta: Mapping[str, Any], data: Mapping[str, Any]) -> list[str]:
    """A note where the test-time views include some that the data set's symmetry rules out
    (a mirrored chest X-ray is another patient's anatomy): legal, but rarely what is meant."""
    views, symmetry = tta.get("views"), data.get("symmetry")
    if views in (None, "auto") or symmetry not in VIEWS_KEPT or views in VIEWS_KEPT[symmetry]:
        return []
    if views not in VIEWS_KEPT["d4"]:  # not a view set at all: the TTA's own error says so
        return []
    return [
        f"tta.views={views} averages views that {data.get('flag')}'s symmetry ({symmetry}) rules "
        f"out: they change what a label means. tta=auto uses only the views it allows."
    ]


def _target(spec: Mapping[str, Any]) -> Any:
    from hydra.utils import get_method

    return get_method(spec["_target_"])


def _arguments(spec: Mapping[str, Any], group: str) -> dict[str, Any]:
    skip = PATHLAB_KEYS.get(group, set())
    return {k: v for k, v in spec.items() if not k.startswith("_") and k not in skip}


def _unknown_arguments(
    fn: Any, kwargs: Mapping[str, Any], group: str, skip: tuple[str, ...] = ()
) -> list[str]:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return []
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return []
    known = [n for n in params if n not in ("self", "params", "optimizer", *skip)]
    return [
        f"{group}.{k} is not a setting of {getattr(fn, '__qualname__', fn)} "
        f"(it takes {', '.join(known)})."
        for k in kwargs
        if k not in params
    ]


def build_optimizer(optim: Mapping[str, Any]) -> tuple[torch.optim.Optimizer | None, list[str]]:
    """The configured optimiser on one dummy parameter: torch's own argument checks, as a
    setting's message (a plain argument list, no traceback)."""
    try:
        cls = _target(optim)
    except Exception as exc:
        return None, [f"optim._target_={optim.get('_target_')} cannot be imported ({exc})."]
    kwargs = _arguments(optim, "optim")
    unknown = _unknown_arguments(cls, kwargs, "optim")
    if unknown:
        return None, unknown
    try:
        return cls([torch.nn.Parameter(torch.zeros(1))], **kwargs), []
    except (ValueError, TypeError, RuntimeError) as exc:
        return None, [f"optim: {optim['_target_']} refuses these settings: {exc}"]


def schedule_curve(
    scheduler: Mapping[str, Any], optim: Mapping[str, Any], total_steps: int
) -> list[float]:
    """The learning rate at every optimiser step of a run of `total_steps` steps, from a fresh
    optimiser of the configured kind (its first parameter group)."""
    optimizer, problems = build_optimizer(optim)
    if optimizer is None:
        raise ConfigError(" ".join(problems))
    sched = _target(scheduler)(
        optimizer, total_steps=total_steps, **_arguments(scheduler, "scheduler")
    )
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stepping the schedule without gradients
        for _ in range(total_steps):
            lrs.append(float(optimizer.param_groups[0]["lr"]))
            optimizer.step()
            sched.step()
    return lrs


# Run lengths the schedule is stepped through: tiny runs (where fractions round to 0 steps) and long
SCHEDULE_STEPS = (1, 2, 3, 10, 1000)


def check_schedule(scheduler: Mapping[str, Any], optim: Mapping[str, Any]) -> list[str]:
    """The schedule over its whole curve, at several run lengths: the lr stays finite and > 0."""
    try:
        factory = _target(scheduler)
    except Exception as exc:
        return [f"scheduler._target_={scheduler.get('_target_')} cannot be imported ({exc})."]
    arguments = _arguments(scheduler, "scheduler")
    unknown = _unknown_arguments(factory, arguments, "scheduler", ("total_steps",))
    if unknown:
        return unknown
    settings = ", ".join(f"{k}={_show(v)}" for k, v in arguments.items())
    name = str(scheduler["_target_"]).rsplit(".", 1)[-1] + (f" ({settings})" if settings else "")
    for total in SCHEDULE_STEPS:
        try:
            lrs = schedule_curve(scheduler, optim, total)
        except ConfigError as exc:
            return [str(exc)]
        except (ValueError, TypeError, ZeroDivisionError, RuntimeError) as exc:
            return [f"scheduler: {name} fails on a {total}-step run: {exc}"]
        bad = next(
            ((i, lr) for i, lr in enumerate(lrs) if not (math.isfinite(lr) and lr > 0)), None
        )
        if bad:
            step, lr = bad
            return [
                f"scheduler: {name} takes the learning rate to {lr:.3g} at step "
                f"{step + 1} of a {total}-step run (optim.lr={optim.get('lr')}); it must stay > 0 "
                "over the whole schedule: keep floors (min_lr_ratio) and factors (gamma, "
                "div_factor) positive and fractions in [0, 1]."
            ]
    return []


def validate_settings(config: Mapping[str, Any], gpus: int | None = None) -> list[str]:
    """Refuse (ConfigError, every problem at once) the impossible numeric settings of a resolved
    train config (a plain dict); returns notes to log for legal settings that are easy to misread.
    `gpus`: this machine's GPU count (default: torch's)."""
    problems = check_schema(config)
    notes: list[str] = []
    if isinstance(config.get("data"), Mapping):
        problems += check_data(config["data"])
    if isinstance(config.get("trainer"), Mapping):
        trainer_problems, notes = check_trainer(config["trainer"], gpus)
        problems += trainer_problems
    if isinstance(config.get("tta"), Mapping) and isinstance(config.get("data"), Mapping):
        notes += check_tta(config["tta"], config["data"])
    if isinstance(config.get("model"), Mapping):
        problems += check_model(config["model"])
    if isinstance(config.get("cv"), Mapping):
        problems += check_cv(config["cv"])
    optim, scheduler = config.get("optim"), config.get("scheduler")
    if not problems and isinstance(optim, Mapping) and "_target_" in optim:
        optimizer, optim_problems = build_optimizer(optim)
        problems += optim_problems
        if optimizer is not None and isinstance(scheduler, Mapping) and "_target_" in scheduler:
            problems += check_schedule(scheduler, optim)
    if problems:
        raise ConfigError(" ".join(dict.fromkeys(problems)))
    return notes

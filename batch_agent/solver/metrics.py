"""The metrics the product knows, and how to read a competition's metric from its description.

Stdlib only: the Lambdas import this module, and it must stay cheap to load.

The registry key (``Metric.name``) is the one name used everywhere else: in
``CompetitionProfile.metric``, in ``scoring.score`` and in the training programs.
``parse_metric`` reads the wording Kaggle uses in a competition's "Evaluation"
section ("Submissions are evaluated on the area under the ROC curve ...").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from batch_agent.solver.errors import InputError

Needs = Literal["score", "label", "value", "top_k"]
TaskFamily = Literal["classification", "regression"]


@dataclass(frozen=True)
class Metric:
    name: str
    title: str
    higher_is_better: bool
    # What the metric scores: probabilities/scores, class labels, real values, ranked label lists.
    needs: Needs
    task_family: TaskFamily


def _metric(name: str, title: str, higher: bool, needs: Needs, family: TaskFamily) -> Metric:
    return Metric(name=name, title=title, higher_is_better=higher, needs=needs, task_family=family)


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        _metric("roc_auc", "Area under the ROC curve", True, "score", "classification"),
        _metric("gini", "Normalized Gini coefficient", True, "score", "classification"),
        _metric("log_loss", "Logarithmic loss", False, "score", "classification"),
        _metric("mean_auc", "Mean column-wise ROC AUC", True, "score", "classification"),
        _metric("accuracy", "Accuracy", True, "label", "classification"),
        _metric("f1", "F1 score", True, "label", "classification"),
        _metric("f1_macro", "Macro-averaged F1 score", True, "label", "classification"),
        _metric("f1_micro", "Micro-averaged F1 score", True, "label", "classification"),
        _metric("f1_weighted", "Weighted F1 score", True, "label", "classification"),
        _metric("mcc", "Matthews correlation coefficient", True, "label", "classification"),
        _metric("balanced_accuracy", "Balanced accuracy", True, "label", "classification"),
        _metric("qwk", "Quadratic weighted kappa", True, "label", "classification"),
        _metric("map_at_k", "Mean average precision @ K", True, "top_k", "classification"),
        _metric("rmse", "Root mean squared error", False, "value", "regression"),
        _metric("mse", "Mean squared error", False, "value", "regression"),
        _metric("rmsle", "Root mean squared logarithmic error", False, "value", "regression"),
        _metric("mae", "Mean absolute error", False, "value", "regression"),
        _metric("medae", "Median absolute error", False, "value", "regression"),
        _metric("mape", "Mean absolute percentage error", False, "value", "regression"),
        _metric("smape", "Symmetric mean absolute percentage error", False, "value", "regression"),
        _metric("r2", "Coefficient of determination (R²)", True, "value", "regression"),
        _metric("mcrmse", "Mean column-wise root mean squared error", False, "value", "regression"),
    )
}

# Other spellings people (and --metric options) use for the registry keys.
_ALIASES: dict[str, str] = {
    "auc": "roc_auc",
    "rocauc": "roc_auc",
    "aucroc": "roc_auc",
    "normalizedgini": "gini",
    "logloss": "log_loss",
    "crossentropy": "log_loss",
    "multiclasslogloss": "log_loss",
    "binarylogloss": "log_loss",
    "acc": "accuracy",
    "f1score": "f1",
    "binaryf1": "f1",
    "macrof1": "f1_macro",
    "microf1": "f1_micro",
    "weightedf1": "f1_weighted",
    "matthews": "mcc",
    "matthewscorrcoef": "mcc",
    "kappa": "qwk",
    "quadraticweightedkappa": "qwk",
    "cohenkappa": "qwk",
    "map": "map_at_k",
    "mapk": "map_at_k",
    "meanaverageprecision": "map_at_k",
    "rootmeansquarederror": "rmse",
    "meansquarederror": "mse",
    "rootmeansquaredlogarithmicerror": "rmsle",
    "meanabsoluteerror": "mae",
    "medianabsoluteerror": "medae",
    "rsquared": "r2",
    "columnwiseauc": "mean_auc",
    "meanrocauc": "mean_auc",
    "meancolumnwiserocauc": "mean_auc",
}


def known_metrics() -> list[str]:
    return sorted(METRICS)


def _alias_key(name: str) -> str:
    return re.sub(r"[^a-z0-9@]", "", name.lower())


def _normalise_name(name: str) -> tuple[str | None, int | None]:
    """The registry key for a name or alias (``"map@5"`` also gives k=5), or None."""
    raw = name.strip().lower()
    if raw in METRICS:
        return raw, None
    key = _alias_key(raw)
    at_k = re.fullmatch(r"(?:map|mapk|meanaverageprecision)@?(\d+|k)", key)
    if at_k:
        return "map_at_k", None if at_k.group(1) == "k" else int(at_k.group(1))
    key = key.replace("@", "")
    for candidate in METRICS:
        if _alias_key(candidate) == key:
            return candidate, None
    return _ALIASES.get(key), None


def get_metric(name: str) -> Metric:
    """The registry entry for a key or a common alias ("auc", "logloss", "rmsle", "qwk", "map@5")."""
    key, _ = _normalise_name(name)
    if key is None:
        raise InputError(f"unknown metric {name!r}; known metrics: {', '.join(known_metrics())}")
    return METRICS[key]


def metric_k(name: str) -> int | None:
    """The K carried by a name such as "map@5" (None when it carries none)."""
    return _normalise_name(name)[1]


@dataclass(frozen=True)
class MetricMatch:
    name: str
    k: int | None
    phrase: str


# Separators Kaggle puts between the words of a metric's name: spaces, hyphens,
# markdown emphasis, line breaks.
_S = r"[\s\-_*]*"
_SP = r"[\s\-_*]+"


def _words(*parts: str) -> str:
    return _SP.join(parts)


# (pattern, metric). Patterns are case-insensitive and bounded by word edges. When
# two matches overlap the longer one wins, so specific phrases ("root mean squared
# logarithmic error", "mean column-wise ROC AUC") beat the general ones they contain.
_ROOT = r"root"
_MEAN = r"mean"
_SQUARED = r"squared?"
_ERR = r"(?:error|deviation)"
_F1 = r"f" + _S + r"1(?:" + _SP + r"score)?"
_COLUMNWISE = r"column" + _S + r"wise"
_PATTERNS: list[tuple[str, str]] = [
    # ranking / probability metrics
    (_words(_MEAN, _COLUMNWISE, r"(?:roc" + _SP + r")?auc"), "mean_auc"),
    (_words(_MEAN, _COLUMNWISE, r"area", r"under", r"the", r"(?:roc" + _SP + r")?curve"), "mean_auc"),
    (
        _words(
            r"(?:averaged?|mean)",
            r"(?:of" + _SP + r"the" + _SP + r")?(?:individual" + _SP + r")?"
            r"(?:roc" + _SP + r")?auc" + _S + r"s?",
            r"(?:of|for|across|over)",
            r"(?:each|every|all)",
        ),
        "mean_auc",
    ),
    (
        _words(
            r"area",
            r"under",
            r"(?:the" + _SP + r")?(?:receiver",
            r"operating",
            r"characteristic|roc)",
            r"curve",
        ),
        "roc_auc",
    ),
    (r"roc" + _S + r"auc|auc" + _S + r"roc|auroc|auc", "roc_auc"),
    (_words(r"normali[sz]ed", r"gini(?:" + _SP + r"coefficient)?"), "gini"),
    (r"gini(?:" + _SP + r"coefficient)?", "gini"),
    (_words(r"(?:multi" + _S + r"class|binary|multinomial)", r"(?:logarithmic|log)", r"loss"), "log_loss"),
    (r"(?:logarithmic|log)" + _S + r"loss|logloss", "log_loss"),
    (r"(?:(?:binary|categorical)" + _SP + r")?cross" + _S + r"entropy(?:" + _SP + r"loss)?", "log_loss"),
    (_words(r"negative", r"log", r"likelihood"), "log_loss"),
    # label metrics
    (_words(r"balanced", r"accuracy"), "balanced_accuracy"),
    (r"(?:categori[sz]ation" + _SP + r"|classification" + _SP + r")?accuracy", "accuracy"),
    (_words(r"macro", r"(?:averaged?" + _SP + r")?f" + _S + r"1(?:" + _SP + r"score)?"), "f1_macro"),
    (_words(_F1, r"\(?(?:(?:with|using)" + _SP + r")?macro(?:" + _S + r"averag(?:ed?|ing))?\)?"), "f1_macro"),
    (_words(r"micro", r"(?:averaged?" + _SP + r")?f" + _S + r"1(?:" + _SP + r"score)?"), "f1_micro"),
    (_words(_F1, r"\(?(?:(?:with|using)" + _SP + r")?micro(?:" + _S + r"averag(?:ed?|ing))?\)?"), "f1_micro"),
    (_words(r"weighted", r"(?:averaged?" + _SP + r")?f" + _S + r"1(?:" + _SP + r"score)?"), "f1_weighted"),
    (_words(_F1, r"\(?(?:(?:with|using)" + _SP + r")?weighted(?:" + _S + r"averag(?:ed?|ing))?\)?"), "f1_weighted"),
    (r"f" + _S + r"1(?:" + _SP + r"score)?|f" + _S + r"score|f" + _S + r"measure", "f1"),
    (_words(r"matthews?(?:['’]s)?", r"correlation", r"coefficient") + r"|\bmcc", "mcc"),
    (_words(r"quadratic", r"weighted", r"(?:cohen(?:['’]s)?" + _SP + r")?kappa"), "qwk"),
    (r"cohen(?:['’]s)?" + _SP + r"kappa|\bqwk|weighted" + _SP + r"kappa", "qwk"),
    (_words(_MEAN, r"average", r"precision", r"(?:@|at)") + _S + r"(?P<k>\d+|k)", "map_at_k"),
    (
        _words(_MEAN, r"average", r"precision") + r"(?:" + _S + r"\(?map" + _S + r"@" + _S + r"(?P<k2>\d+|k)\)?)?",
        "map_at_k",
    ),
    (r"map" + _S + r"@" + _S + r"(?P<k>\d+|k)", "map_at_k"),
    # value metrics
    (_words(_MEAN, _COLUMNWISE, _ROOT, _MEAN, _SQUARED, _ERR), "mcrmse"),
    (r"mcrmse", "mcrmse"),
    (_words(_ROOT, _MEAN, _SQUARED, r"(?:logarithmic|log)", _ERR), "rmsle"),
    (
        _words(_ROOT, _MEAN, _SQUARED, _ERR, r"(?:of" + _SP + r"the" + _SP + r")?(?:logarithms?|logs?)"),
        "rmsle",
    ),
    (r"rmsle", "rmsle"),
    # "RMSE between the logarithm of the predicted value and the logarithm of the observed price".
    (
        r"(?:"
        + _words(_ROOT, _MEAN, _SQUARED, _ERR)
        + r"|rmse)(?:"
        + _S
        + r"\(rmse\))?"
        + _SP
        + _words(r"between", r"the", r"log(?:arithm)?s?"),
        "rmsle",
    ),
    (_words(_ROOT, _MEAN, _SQUARED, _ERR), "rmse"),
    (r"rmse", "rmse"),
    (_words(_MEAN, _SQUARED, _ERR), "mse"),
    (r"mse", "mse"),
    (_words(r"symmetric", _MEAN, r"absolute", r"percentage", _ERR), "smape"),
    (r"smape", "smape"),
    (_words(_MEAN, r"absolute", r"percentage", _ERR), "mape"),
    (r"mape", "mape"),
    (_words(r"median", r"absolute", _ERR), "medae"),
    (_words(_MEAN, r"absolute", _ERR), "mae"),
    (r"mae", "mae"),
    (_words(r"coefficient", r"of", r"determination"), "r2"),
    (r"r" + _S + r"(?:\^" + _S + r"2|²|2|squared)(?=[\s.,;:)]|$)", "r2"),
]

_COMPILED = [(re.compile(r"(?<![\w@])(?:" + p + r")(?![\w@])", re.IGNORECASE), name) for p, name in _PATTERNS]

_HEADING = re.compile(r"^(#{1,6})[ \t]*(.+?)[ \t#]*$", re.MULTILINE)
_EVALUATION_TITLE = re.compile(r"\bevaluation\b|\bmetric\b|\bscoring\b", re.IGNORECASE)
# Sentences that state the metric rather than mention one in passing.
_EVALUATION_CUE = re.compile(r"evaluat|scored|scoring|score is|metric|measured|judged|graded|ranked", re.IGNORECASE)


def evaluation_section(description: str) -> str | None:
    """The text under the description's "Evaluation" heading, or None when it has none."""
    headings = list(_HEADING.finditer(description))
    for i, heading in enumerate(headings):
        if not _EVALUATION_TITLE.search(heading.group(2)):
            continue
        level = len(heading.group(1))
        end = len(description)
        for later in headings[i + 1 :]:
            if len(later.group(1)) <= level:
                end = later.start()
                break
        return description[heading.end() : end]
    # Plain-text descriptions: a line that is just "Evaluation", up to the next short title line.
    plain = re.search(r"^[ \t]*Evaluation[ \t]*:?[ \t]*$", description, re.MULTILINE | re.IGNORECASE)
    if plain:
        rest = description[plain.end() :]
        stop = re.search(r"^\s*(?:Submission (?:File|Format)|Timeline|Prizes)\b", rest, re.MULTILINE)
        return rest[: stop.start()] if stop else rest
    return None


@dataclass(frozen=True)
class _Hit:
    start: int
    end: int
    name: str
    k: int | None
    phrase: str


def _hits(text: str) -> list[_Hit]:
    hits: list[_Hit] = []
    for pattern, name in _COMPILED:
        for m in pattern.finditer(text):
            k_text = m.groupdict().get("k") or m.groupdict().get("k2")
            k = int(k_text) if k_text and k_text.isdigit() else None
            hits.append(_Hit(m.start(), m.end(), name, k, m.group(0)))
    # Drop every hit lying inside a longer one: the longer phrase is the more specific.
    hits.sort(key=lambda h: (h.start, -(h.end - h.start)))
    kept: list[_Hit] = []
    for hit in hits:
        if any(k.start <= hit.start and hit.end <= k.end for k in kept):
            continue
        kept = [k for k in kept if not (hit.start <= k.start and k.end <= hit.end)]
        kept.append(hit)
    return kept


def _sentence_around(text: str, position: int) -> str:
    start = max(text.rfind(".", 0, position), text.rfind("\n\n", 0, position)) + 1
    stop_candidates = [i for i in (text.find(". ", position), text.find("\n\n", position)) if i != -1]
    stop = min(stop_candidates) if stop_candidates else len(text)
    return text[start:stop]


def _best_hit(text: str) -> _Hit | None:
    hits = _hits(text)
    if not hits:
        return None
    # A metric named in a sentence about evaluation beats one mentioned in passing;
    # otherwise the first one named wins.
    cued = [h for h in hits if _EVALUATION_CUE.search(_sentence_around(text, h.start))]
    return (cued or hits)[0]


def parse_metric(description: str) -> MetricMatch | None:
    """The metric a competition description names, preferring its Evaluation section; None if none."""
    section = evaluation_section(description)
    hit = _best_hit(section) if section else None
    if hit is None:
        hit = _best_hit(description)
    if hit is None:
        return None
    return MetricMatch(name=hit.name, k=hit.k, phrase=" ".join(hit.phrase.split()))

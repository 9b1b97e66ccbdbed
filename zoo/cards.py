"""Model cards rendered for people: ``zoo info`` and the README.md of ``save_pretrained`` folders."""

from __future__ import annotations

import yaml

from zoo.registry import ModelEntry, get_entry


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def recipe_config(entry: ModelEntry, name: str | None = None) -> dict:
    """A recipe's YAML files merged in order, as LightningCLI applies them."""
    config: dict = {}
    for path in entry.recipe_paths(name):
        config = _merge(config, yaml.safe_load(path.read_text()) or {})
    return config


def _recipe_summary(entry: ModelEntry, name: str) -> str:
    """One line: data, epochs, batch, optimiser and schedule of a recipe YAML."""
    config = recipe_config(entry, name)
    data = config.get("data", {}) or {}
    data_args = data.get("init_args", {}) or {}
    optimizer = config.get("optimizer", {}) or {}
    scheduler = config.get("lr_scheduler", {}) or {}
    trainer = config.get("trainer", {}) or {}
    source = data_args.get("dataset") or data_args.get("root") or data.get("class_path", "?").rsplit(".", 1)[-1]
    if source == "auto":
        source = "bundled digits (or an ImageFolder with --data.root)"
    parts = [
        f"data {source}",
        f"{trainer.get('max_epochs', '?')} epochs",
        f"batch {data_args.get('batch_size', '?')}",
    ]
    if "image_size" in data_args:
        parts.append(f"{data_args['image_size']} px")
    augment = data_args.get("augment")
    if augment == "randaugment":
        policy, erasing = data_args.get("rand_augment", "rand-m9-mstd0.5-inc1"), data_args.get("random_erasing", 0.25)
        augment += f" ({policy}, erasing {erasing})"
    if augment:
        parts.append(f"augment {augment}")
    task_args = (config.get("model", {}) or {}).get("init_args", {}) or {}
    mixing = [f"{name} {task_args[key]}" for name, key in (("Mixup", "mixup_alpha"), ("CutMix", "cutmix_alpha"))
              if task_args.get(key)]
    if mixing:
        parts.append(" / ".join(mixing))
    if task_args.get("label_smoothing"):
        parts.append(f"label smoothing {task_args['label_smoothing']}")
    if optimizer:
        args = optimizer.get("init_args", {}) or {}
        hyper = ", ".join(f"{k} {v}" for k, v in args.items())
        parts.append(f"{optimizer['class_path'].rsplit('.', 1)[-1]}({hyper})")
    if scheduler:
        parts.append(f"schedule {scheduler['class_path'].rsplit('.', 1)[-1]}")
    return "; ".join(parts)


def _output_text(card, num_classes: int | None = None) -> str:
    output = card.output
    classes = num_classes if num_classes is not None else card.num_classes
    name = type(output).__name__
    if classes is not None:
        return f"{name} ({classes} classes)"
    fields = ", ".join(f"{k}={v}" for k, v in vars(output).items())
    return f"{name} ({fields})" if fields else name


def card_fields(model_id: str, saved: dict | None = None) -> list[tuple[str, str]]:
    """(label, value) pairs of a model card, in display order.

    Args:
        saved: for a saved model, its record (``model.zoo_config``) and ``num_params``: the card then describes
            that model (its head, its parameter count), not the default configuration.
    """
    entry = get_entry(model_id)
    card = entry.card
    paper = card.paper
    fields = [
        ("model", model_id),
        ("task", card.task),
        ("paper", f"{paper.title}" + (f" ({paper.venue})" if paper.venue else "")),
    ]
    if paper.url:
        fields.append(("arXiv", paper.url))
    if paper.code_url:
        fields.append(("official code", paper.code_url))
    fields += [
        ("licence", f"{card.license} (original code)"),
    ]
    if saved is not None:
        count = saved["num_params"]
        fields.append(("parameters", f"{count:,} ({count / 1e6:.2f} M) as saved; the card's default "
                                     f"configuration has {card.num_params:,}"))
        fields.append(("output", _output_text(card, saved.get("num_classes"))))
        if saved.get("model_kwargs"):
            fields.append(("configuration", ", ".join(f"{k}={v}" for k, v in saved["model_kwargs"].items())))
    else:
        fields.append(("parameters", f"{card.num_params:,} ({card.num_params / 1e6:.2f} M) at the default "
                                     "configuration"))
        fields.append(("output", _output_text(card)))
    if card.macs is not None:
        fields.append(("MACs", f"{card.macs / 1e9:.3f} G at input {tuple(card.input_shape)}"))
    fields.append(("input", f"{tuple(card.input_shape)} per example"))
    for name, shape in card.extra_inputs.items():
        fields.append((f"input {name}", f"{tuple(shape)} per example"))
    for i, name in enumerate(card.recipes):
        label = f"recipe {name}" + (" (default)" if i == 0 else "")
        fields.append((label, _recipe_summary(entry, name)))
    if not card.weights:
        fields.append(("weights", "none published"))
    for weights in card.weights:
        where = weights.url or weights.download_page or "?"
        prep = weights.preprocessing
        inputs = prep and (f"inputs {prep.input_size} px {prep.interpolation}, crop {prep.crop_pct:g}, mean "
                           f"{list(prep.mean)}, std {list(prep.std)}")
        parts = [weights.description, ", ".join(f"{k} {v}" for k, v in weights.metrics.items()), inputs, where]
        fields.append((f"weights {weights.name}", "; ".join(p for p in parts if p)))
    if card.target_layer:
        fields.append(("Grad-CAM layer", card.target_layer))
    if card.notes:
        fields.append(("notes", card.notes))
    return fields


def render_card(model_id: str, saved: dict | None = None) -> str:
    """The card as Markdown, with YAML front matter in the Hugging Face model-card style (``saved``: see
    :func:`card_fields`)."""
    card = get_entry(model_id).card
    lines = ["---", "library_name: zoo", f"license: {card.license.lower()}", f"tags: [{card.task}]", "---", "",
             f"# {model_id}", ""]
    lines += [f"- **{label}**: {value}" for label, value in card_fields(model_id, saved)[1:]]
    return "\n".join(lines) + "\n"


README_START, README_END = "<!-- model-table:start -->", "<!-- model-table:end -->"


def list_row(model_id: str) -> list[str]:
    """The row of ``zoo list``: id, task, parameters (M), GMACs, input shape, weight sets."""
    card = get_entry(model_id).card
    macs = f"{card.macs / 1e9:.2f}" if card.macs is not None else "-"
    weights = ", ".join(w.name for w in card.weights) or "-"
    return [model_id, card.task, f"{card.num_params / 1e6:.2f}", macs, "x".join(map(str, card.input_shape)), weights]


def model_table() -> str:
    """The README's model table, generated from the registry (one row per id)."""
    from zoo.registry import list_models

    rows = ["| model | task | paper | params | GMACs | input | weights |", "|---|---|---|---:|---:|---|---|"]
    for model_id in list_models():
        card = get_entry(model_id).card
        paper = f"[{card.paper.arxiv}]({card.paper.url})" if card.paper.url else card.paper.title
        macs = f"{card.macs / 1e9:.2f}" if card.macs is not None else "-"
        weights = ", ".join(w.name for w in card.weights) or "-"
        shape = "x".join(map(str, card.input_shape))
        rows.append(f"| `{model_id}` | {card.task} | {paper} | {card.num_params:,} | {macs} | {shape} | {weights} |")
    return "\n".join(rows)


def update_readme(path: str = "README.md") -> bool:
    """Rewrite the table between the README markers; returns whether anything changed."""
    from pathlib import Path

    text = Path(path).read_text()
    head, _, rest = text.partition(README_START)
    _, _, tail = rest.partition(README_END)
    updated = f"{head}{README_START}\n{model_table()}\n{README_END}{tail}"
    if updated != text:
        Path(path).write_text(updated)
    return updated != text

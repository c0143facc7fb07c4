"""A serving bundle: everything one recommender needs, in one folder, with a manifest that ties the
parts together.

Layout::

    BUNDLE/
      manifest.json        format, and a sha256 of every part (below) + what each part was made for
      backbone/            the P5 folder (config.json, model.safetensors, tokenizer, data_spec.json)
      catalogue.json       the data it was trained on: data spec, user raw ids, item raw ids + titles,
                           each user's consumed items (item_idx, time order)
      prompts/<attribute>/ one CFP prompt folder per attribute (``CFPModel.save_prompt``)
      mixture/             the Prompt Mixture's mixer weights (optional; ``mixture.json``: attributes)

The training jobs write it (``train_cfp``: backbone + catalogue + its prompt, ``train_cfp_mixture``:
backbone + catalogue + every prompt + the mixture). ``open_bundle`` refuses, with one line, a bundle
whose parts do not belong together: a part changed after it was recorded, a prompt or mixture made
for another backbone, a catalogue whose item count differs from the backbone's tokenizer, a
catalogue from other data than the backbone's ``data_spec.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fairrec_ray.cli import write_json_atomic
from fairrec_ray.errors import ConfigError

FORMAT = "fairrec-bundle/1"
MANIFEST = "manifest.json"
BACKBONE = "backbone"
CATALOGUE = "catalogue.json"
PROMPTS = "prompts"
MIXTURE = "mixture"
MIXTURE_META = "mixture.json"


class BundleError(ConfigError):
    """A bundle is missing, malformed, or its parts do not belong together."""


# ---------------------------------------------------------------- hashes (pure)


def folder_sha256(folder: str | Path) -> str:
    """sha256 over every file below ``folder`` (relative name + content, sorted by name)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class Catalogue:
    """Users, items and what each user consumed, as the backbone numbers them (``*_idx``)."""

    data_spec: dict[str, Any]
    user_ids: tuple[str, ...]  # raw id of user_idx
    item_ids: tuple[str, ...]  # raw id of item_idx
    item_titles: tuple[str, ...]
    consumed: tuple[tuple[int, ...], ...]  # per user_idx, time order

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def to_json(self) -> dict[str, Any]:
        return {
            "data_spec": self.data_spec,
            "user_ids": list(self.user_ids),
            "item_ids": list(self.item_ids),
            "item_titles": list(self.item_titles),
            "consumed": [list(c) for c in self.consumed],
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> Catalogue:
        try:
            cat = cls(
                dict(payload["data_spec"]),
                tuple(str(u) for u in payload["user_ids"]),
                tuple(str(i) for i in payload["item_ids"]),
                tuple(str(t) for t in payload["item_titles"]),
                tuple(tuple(int(i) for i in c) for c in payload["consumed"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{CATALOGUE}: malformed ({type(exc).__name__}: {exc})") from None
        if len(cat.item_titles) != cat.n_items or len(cat.consumed) != cat.n_users:
            raise BundleError(f"{CATALOGUE}: item titles / consumed lists do not match the id lists")
        if any(i < 0 or i >= cat.n_items for c in cat.consumed for i in c):
            raise BundleError(f"{CATALOGUE}: a consumed item lies outside 0..{cat.n_items - 1}")
        return cat

    @classmethod
    def from_dataset(cls, dataset: Any, data_spec: dict[str, Any]) -> Catalogue:
        """From a ``RecDataset`` (every user, every consumed item)."""
        titles = dataset.items["title"] if "title" in dataset.items else [""] * dataset.n_items
        return cls(
            dict(data_spec),
            tuple(str(u) for u in dataset.users["raw_id"]),
            tuple(str(i) for i in dataset.items["raw_id"]),
            tuple(str(t) for t in titles),
            tuple(tuple(int(i) for i in seq) for seq in dataset.user_sequences()),
        )


# ---------------------------------------------------------------- writing


def _copy_folder(source: Path, dest: Path) -> None:
    """Replace ``dest`` with a copy of ``source`` (a copy, not links: a training job that later
    rewrites its own files in place must not change the bundle)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        shutil.copytree(source, tmp / "x")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp / "x", dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_manifest(bundle: str | Path) -> dict[str, Any]:
    path = Path(bundle) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{bundle}: not a serving bundle (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise BundleError(f"{path}: not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else None
        raise BundleError(f"{path}: format {got!r}; expected {FORMAT!r}")
    return manifest


def init_bundle(bundle: str | Path, backbone_dir: str | Path, catalogue: Catalogue) -> dict[str, Any]:
    """Create ``bundle`` with the backbone and catalogue, or check that an existing one holds the
    same backbone and catalogue (then prompts/mixtures can be added to it)."""
    bundle = Path(bundle)
    backbone_sha = folder_sha256(backbone_dir)
    cat_payload = catalogue.to_json()
    cat_sha = hashlib.sha256(json.dumps(cat_payload, sort_keys=True).encode()).hexdigest()
    if (bundle / MANIFEST).is_file():
        manifest = read_manifest(bundle)
        if manifest["backbone"]["sha256"] != backbone_sha:
            raise BundleError(f"{bundle}: holds another backbone than {backbone_dir}; write to a new bundle folder")
        if manifest["catalogue"]["sha256"] != cat_sha:
            raise BundleError(f"{bundle}: holds another catalogue (other data) than this job's; use a new folder")
        return manifest
    bundle.mkdir(parents=True, exist_ok=True)
    _copy_folder(Path(backbone_dir), bundle / BACKBONE)
    write_json_atomic(bundle / CATALOGUE, cat_payload)
    manifest = {
        "format": FORMAT,
        "backbone": {"sha256": backbone_sha},
        "catalogue": {
            "sha256": file_sha256(bundle / CATALOGUE),
            "n_users": catalogue.n_users,
            "n_items": catalogue.n_items,
            "content_sha256": cat_sha,
        },
        "prompts": {},
        "mixture": None,
    }
    write_json_atomic(bundle / MANIFEST, manifest)
    return manifest


def add_prompt(bundle: str | Path, attribute: str, prompt_dir: str | Path, backbone_dir: str | Path) -> dict[str, Any]:
    """Put ``prompt_dir`` (trained on ``backbone_dir``) into ``bundle`` as ``attribute``'s prompt."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    if folder_sha256(backbone_dir) != manifest["backbone"]["sha256"]:
        raise BundleError(f"{bundle}: prompt {attribute!r} was trained on another backbone ({backbone_dir})")
    _check_name(attribute)
    (bundle / PROMPTS).mkdir(exist_ok=True)
    _copy_folder(Path(prompt_dir), bundle / PROMPTS / attribute)
    manifest["prompts"][attribute] = {
        "sha256": folder_sha256(bundle / PROMPTS / attribute),
        "backbone_sha256": manifest["backbone"]["sha256"],
    }
    if manifest.get("mixture") and attribute in manifest["mixture"]["attributes"]:
        manifest["mixture"] = None  # the mixture was trained over the replaced prompt
    write_json_atomic(bundle / MANIFEST, manifest)
    return manifest


def add_mixture(bundle: str | Path, mixture_dir: str | Path, attributes: list[str]) -> dict[str, Any]:
    """Put a trained mixture (``MixtureModel.save_mixers`` folder) over ``attributes``'s prompts,
    which must already be in ``bundle``, into it."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    missing = [a for a in attributes if a not in manifest["prompts"]]
    if missing or len(attributes) < 2:
        raise BundleError(f"{bundle}: a mixture needs >= 2 prompts in the bundle; missing {missing}")
    _copy_folder(Path(mixture_dir), bundle / MIXTURE)
    write_json_atomic(bundle / MIXTURE / MIXTURE_META, {"attributes": list(attributes)})
    manifest["mixture"] = {
        "attributes": list(attributes),
        "sha256": folder_sha256(bundle / MIXTURE),
        "prompts_sha256": {a: manifest["prompts"][a]["sha256"] for a in attributes},
    }
    write_json_atomic(bundle / MANIFEST, manifest)
    return manifest


def write_bundle(
    bundle: str | Path,
    backbone_dir: str | Path,
    catalogue: Catalogue,
    prompts: dict[str, str | Path] | None = None,
    mixture_dir: str | Path | None = None,
) -> Path:
    """A whole bundle in one call (what the training jobs use)."""
    init_bundle(bundle, backbone_dir, catalogue)
    for attribute, folder in (prompts or {}).items():
        add_prompt(bundle, attribute, folder, backbone_dir)
    if mixture_dir is not None:
        add_mixture(bundle, mixture_dir, list(prompts or {}))
    return Path(bundle)


def _check_name(attribute: str) -> None:
    if not attribute or not all(c.isalnum() or c in "_-" for c in attribute):
        raise BundleError(f"attribute name {attribute!r}: use letters, digits, '_' or '-'")


# ---------------------------------------------------------------- reading + validation


@dataclass(frozen=True)
class Bundle:
    root: Path
    manifest: dict[str, Any]
    catalogue: Catalogue

    @property
    def backbone_dir(self) -> Path:
        return self.root / BACKBONE

    @property
    def attributes(self) -> list[str]:
        return sorted(self.manifest["prompts"])

    def prompt_dir(self, attribute: str) -> Path:
        return self.root / PROMPTS / attribute

    @property
    def mixture_attributes(self) -> list[str]:
        mixture = self.manifest.get("mixture")
        return list(mixture["attributes"]) if mixture else []

    @property
    def mixture_dir(self) -> Path | None:
        return self.root / MIXTURE if self.manifest.get("mixture") else None


def open_bundle(bundle: str | Path, verify: bool = True) -> Bundle:
    """Read ``bundle`` and check that its parts belong together (``BundleError``, one line, if not)."""
    root = Path(bundle).resolve()
    manifest = read_manifest(root)
    try:
        backbone_sha = manifest["backbone"]["sha256"]
        prompts = dict(manifest["prompts"])
        mixture = manifest.get("mixture")
        cat_sha = manifest["catalogue"]["sha256"]
    except (KeyError, TypeError) as exc:
        raise BundleError(f"{root / MANIFEST}: missing entry {exc}") from None
    if not (root / BACKBONE / "config.json").is_file():
        raise BundleError(f"{root}: no backbone ({BACKBONE}/config.json)")
    if not (root / CATALOGUE).is_file():
        raise BundleError(f"{root}: no {CATALOGUE}")
    if verify:
        if folder_sha256(root / BACKBONE) != backbone_sha:
            raise BundleError(f"{root}: {BACKBONE}/ differs from the backbone the manifest records (replaced?)")
        if file_sha256(root / CATALOGUE) != cat_sha:
            raise BundleError(f"{root}: {CATALOGUE} differs from the one the manifest records (other data?)")
    for attribute, entry in sorted(prompts.items()):
        folder = root / PROMPTS / attribute
        if not (folder / "encoder_prefix_config.json").is_file():
            raise BundleError(f"{root}: prompt {attribute!r} missing ({PROMPTS}/{attribute}/)")
        if entry.get("backbone_sha256") != backbone_sha:
            raise BundleError(f"{root}: prompt {attribute!r} was trained on another backbone than {BACKBONE}/")
        if verify and folder_sha256(folder) != entry.get("sha256"):
            raise BundleError(f"{root}: prompt {attribute!r} differs from the one the manifest records (replaced?)")
    if mixture:
        attrs = list(mixture.get("attributes", []))
        for attribute in attrs:
            if attribute not in prompts:
                raise BundleError(f"{root}: the mixture mixes {attribute!r}, which has no prompt in the bundle")
            if mixture.get("prompts_sha256", {}).get(attribute) != prompts[attribute].get("sha256"):
                raise BundleError(
                    f"{root}: the mixture was trained over another {attribute!r} prompt than the bundle's"
                )
        if verify and folder_sha256(root / MIXTURE) != mixture.get("sha256"):
            raise BundleError(f"{root}: {MIXTURE}/ differs from the one the manifest records (replaced?)")
    try:
        catalogue = Catalogue.from_json(json.loads((root / CATALOGUE).read_text()))
    except ValueError as exc:
        raise BundleError(f"{root / CATALOGUE}: not JSON ({exc})") from None
    _check_catalogue_fits_backbone(root, catalogue)
    return Bundle(root, manifest, catalogue)


def _check_catalogue_fits_backbone(root: Path, catalogue: Catalogue) -> None:
    meta_path = root / BACKBONE / "p5_tokenizer.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        n_items = len(meta.get("item_numbers", []))
        if n_items != catalogue.n_items:
            raise BundleError(f"{root}: the backbone numbers {n_items} items, the catalogue has {catalogue.n_items}")
        users = meta.get("user_numbers")
        if users is not None and len(users) != catalogue.n_users:
            raise BundleError(f"{root}: the backbone numbers {len(users)} users, the catalogue has {catalogue.n_users}")
    spec_path = root / BACKBONE / "data_spec.json"
    if spec_path.is_file():
        spec = json.loads(spec_path.read_text())
        differ = data_spec_differences(spec, catalogue.data_spec)
        if differ:
            raise BundleError(
                f"{root}: the catalogue's data differs from the backbone's data_spec.json in {', '.join(differ)}"
            )


def data_spec_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The data-spec keys on which two specs name different data: the dataset, and for the synthetic
    generator its seed and sizes (a real dataset's files are checked by the item count instead)."""
    keys = ["dataset"]
    if a.get("dataset") == "synthetic":
        keys += ["seed", *sorted(k for k in a if k.startswith("synthetic_"))]
    return [k for k in keys if k in a and k in b and a[k] != b[k]]


def consumed_mask(catalogue: Catalogue, user_idx: int) -> np.ndarray:
    mask = np.zeros(catalogue.n_items, dtype=bool)
    mask[list(catalogue.consumed[user_idx])] = True
    return mask


BUNDLE_DIR = "bundle"


def write_job_bundle(
    output: str | Path,
    backbone_dir: str | Path,
    dataset: Any,
    config: Any,
    prompts: dict[str, str | Path],
    mixture_dir: str | Path | None = None,
) -> Path:
    """``OUTPUT/bundle/`` of a training job: its backbone, the catalogue of ``dataset`` (as
    ``config``'s data options name it), its prompt(s) and mixture. The job's own bundle is rewritten
    whole (a resumed run may have a re-trained backbone: its old bundle must not block the results)."""
    from fairrec_ray.data.options import data_spec

    catalogue = Catalogue.from_dataset(dataset, data_spec(config))
    bundle = Path(output) / BUNDLE_DIR
    if bundle.exists():
        shutil.rmtree(bundle)
    return write_bundle(bundle, backbone_dir, catalogue, prompts, mixture_dir)

"""The pipeline spec: a versioned, validated description of a whole run.

The spec model is built from the plugin registry: every strategy field is a
union discriminated by ``name``, each member carrying that strategy's own
``Params`` model, so an installed plugin's parameters validate (and appear in
the exported JSON Schema) exactly like the built-ins'. A strategy may be given
as a bare name (``similarity: l2``) or as ``{name: l2, params: {...}}``.

Relative paths are resolved against the folder of the spec file.
"""

from __future__ import annotations

import functools
import json
import tomllib
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from boneframe.errors import InputError
from boneframe.registry import Registry, get_registry

SPEC_VERSION = 1
FORMATS = ("npy", "zarr", "tif", "nii")
#: What a super-resolution stage's kernel file may be.
KERNEL_FILES = (".npy", ".zarr")


class SpecError(InputError):
    """An invalid spec: every problem with its field path."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"invalid spec {source}: " + "; ".join(problems))


def _bare_name(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


def _strategy_union(registry: Registry, kind: str) -> Any:
    """``Annotated[Union[...], discriminator]`` of every registered strategy of ``kind``."""
    members = []
    for entry in registry.entries(kind):
        cls = entry.cls
        model_name = "".join(part.capitalize() for part in f"{kind}-{entry.name}".split("-"))
        # types made at run time: statically, any type
        name_type: Any = Literal[entry.name]
        members.append(
            create_model(
                model_name,
                __config__=ConfigDict(extra="forbid", title=f"{kind} {entry.name}"),
                __doc__=entry.description or None,
                name=(name_type, ...),
                params=(cls.Params, Field(default_factory=cls.Params)),
            )
        )
    if not members:
        raise InputError(f"no {kind} strategy is registered")
    if len(members) == 1:
        return Annotated[members[0], BeforeValidator(_bare_name)]
    union: Any = Union[tuple(members)]  # noqa: UP007 (members known only at run time)
    return Annotated[union, Field(discriminator="name"), BeforeValidator(_bare_name)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_default=True)


Triple = tuple[float, float, float]
#: A voxel size: three positive finite numbers (µm).
VoxelSize = tuple[
    Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]
]
#: The resolution factor p between the two grids.
Resolution = Annotated[int, Field(ge=1, le=4, description="Resolution factor per axis.")]
#: A grid of regions over the low-resolution field of view: regions per axis (z, y, x).
Regions = tuple[
    Annotated[int, Field(ge=1, le=64)],
    Annotated[int, Field(ge=1, le=64)],
    Annotated[int, Field(ge=1, le=64)],
]


def _odd_support(v: int) -> int:
    if v % 2 == 0:
        raise ValueError(f"kernel support must be odd, got {v}")
    return v


class PhantomInputs(_Model):
    """A synthetic pair with a known kernel (see ``boneframe phantom``)."""

    size: int = Field(64, ge=16, le=1024, description="High-resolution size per axis.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Random seed (structure and noise).")
    noise: float = Field(0.01, ge=0, description="Noise SD of the low-resolution scan.")
    offset: float = Field(0.0, description="Grey-level shift c.")
    kernel_sigma: Triple = Field((1.6, 1.3, 1.1), description="True kernel sigma, HR voxels.")
    kernel_shift: Triple = Field((0.3, -0.2, 0.1), description="True kernel centre offset.")
    kernel_gain: float = Field(1.0, gt=0, description="True kernel sum.")
    kernel_support: int = Field(9, ge=3, le=25, description="True kernel support (odd).")
    bv_tv: float = Field(0.25, ge=0.05, le=0.5, description="Target BV/TV.")
    thickness: float = Field(3.0, ge=1.5, le=8, description="Trabecular thickness, HR voxels.")
    voxel_size: float = Field(41.0, gt=0, description="High-resolution voxel size, µm.")
    shading: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Gain of the low-resolution scan varying linearly by ±shading across "
        "its last axis (a scanner artefact); 0: none.",
    )
    kernel_variation: float = Field(
        1.0,
        ge=1.0,
        le=4.0,
        description="The blur widens across the last axis from the true kernel on one "
        "side to kernel_variation times wider on the other (a scanner's blur away from "
        "its rotation centre); 1: one kernel everywhere.",
    )

    @field_validator("kernel_support")
    @classmethod
    def _odd(cls, v: int) -> int:
        return _odd_support(v)

    def check_grid(self, p: int) -> None:
        """The size must be a multiple of ``p`` and hold the kernel."""
        if self.size % p:
            raise ValueError(f"phantom size {self.size} must be a multiple of p={p}")
        if self.kernel_support > self.size:
            raise ValueError(
                f"kernel_support {self.kernel_support} is larger than the phantom ({self.size})"
            )


class PhantomCommand(PhantomInputs):
    """``boneframe phantom``: the spec's phantom written to files, in memory up to
    512³ and chunk by chunk (zarr) above or with a tile."""

    size: int = Field(64, ge=16, le=16384, description="High-resolution size per axis.")
    p: Resolution = 2
    format: Literal["npy", "zarr", "tif", "tiff", "nii"] = Field("npy", description="Format.")
    tile: int = Field(0, ge=0, description="Tile of a chunk-by-chunk phantom (0: automatic).")
    regions: Regions = Field(
        (1, 1, 4), description="Grid of the true regional kernels written with kernel_variation."
    )

    @model_validator(mode="after")
    def _grid(self) -> PhantomCommand:
        self.check_grid(self.p)
        if self.tile and (self.tile < 16 or self.tile % self.p):
            raise ValueError(f"tile {self.tile} must be at least 16 and a multiple of p={self.p}")
        return self


class FileInputs(_Model):
    """A registered pair of files."""

    hr: Path = Field(description="High-resolution (micro-CT) volume on the p-times finer grid.")
    lr: Path = Field(description="Low-resolution (HR-pQCT) volume.")
    voxel_size_hr: VoxelSize | None = Field(None, description="Override, µm per axis.")
    voxel_size_lr: VoxelSize | None = Field(None, description="Override, µm per axis.")


def _registration_params() -> type[BaseModel]:
    from boneframe.registration import RegistrationParams

    return RegistrationParams


class RegisterInputs(_Model):
    """Raw scans: the micro-CT is registered to the HR-pQCT and resampled onto the
    HR-pQCT-aligned grid p times finer (``boneframe register``) before the stages."""

    moving: Path = Field(description="Raw micro-CT scan (any voxel size and orientation).")
    fixed: Path = Field(description="HR-pQCT scan (becomes the low-resolution volume).")
    voxel_size_moving: VoxelSize | None = Field(None, description="Override, µm per axis.")
    voxel_size_fixed: VoxelSize | None = Field(None, description="Override, µm per axis.")
    params: _registration_params() = Field(  # type: ignore[valid-type]
        default_factory=lambda: _registration_params()(),
        description="Registration parameters (see boneframe register).",
    )


class Inputs(_Model):
    """Exactly one of ``phantom``, ``files`` or ``registration``, and the resolution factor."""

    phantom: PhantomInputs | None = None
    files: FileInputs | None = None
    registration: RegisterInputs | None = None
    p: Resolution = 2

    @model_validator(mode="after")
    def _one_source(self) -> Inputs:
        given = [self.phantom, self.files, self.registration]
        if sum(x is not None for x in given) != 1:
            raise ValueError("give exactly one of 'phantom', 'files' or 'registration'")
        if self.phantom is not None:
            self.phantom.check_grid(self.p)
        if self.registration is not None:
            prm = self.registration.params
            if prm.p != self.p or prm.pad != 0:
                raise ValueError(
                    f"registration.params must keep p = inputs.p ({self.p}) and pad = 0, so that "
                    "micro-CT voxel p*i lies on HR-pQCT voxel i"
                )
        return self


class ComputeSpec(_Model):
    """Large-volume execution (dask)."""

    chunk_size: int = Field(
        128,
        ge=16,
        description="Chunk edge (voxels, a multiple of p) of zarr inputs, which kernel "
        "estimation reads chunk by chunk.",
    )
    scheduler: str | None = Field(
        None,
        description="dask.distributed scheduler address running the chunked work: "
        "tcp://host:port on this machine (localhost, 127.0.0.0/8, [::1]) or tls://host:port "
        "with dask's TLS settings (a plain tcp:// address elsewhere needs the command line's "
        "--allow-remote-scheduler); the command line's --scheduler wins.",
    )

    device: Literal["cpu", "cuda"] = Field(
        "cpu",
        description="Where the super-resolutions of in-memory volumes run: cpu, or cuda "
        "(CuPy on an NVIDIA GPU, pip install 'boneframe[gpu]'); zarr volumes are solved "
        "block by block on the CPU.",
    )

    @field_validator("scheduler")
    @classmethod
    def _scheduler_syntax(cls, value: str | None) -> str | None:
        if value is not None:  # the syntax at load time; the loopback rule when connecting
            from boneframe.compute import parse_scheduler_address

            parse_scheduler_address(value)
        return value


class OutputSpec(_Model):
    """What is written into the output directory."""

    format: Literal["npy", "zarr", "tif", "nii"] = Field("npy", description="Volume format.")
    save_volumes: bool = Field(True, description="Write the super-resolved volumes.")


@functools.cache
def _spec_model_for(registry_id: int) -> type[BaseModel]:
    registry = _REGISTRIES[registry_id]
    if TYPE_CHECKING:  # unions of the registered strategies' models, made at run time
        Similarity: TypeAlias = Any
        Regularizer: TypeAlias = Any
        Solver: TypeAlias = Any
        Contouring: TypeAlias = Any
        Segmentation: TypeAlias = Any
    else:
        Similarity = _strategy_union(registry, "similarity")
        Regularizer = _strategy_union(registry, "regularizer")
        Solver = _strategy_union(registry, "solver")
        Contouring = _strategy_union(registry, "contour")
        Segmentation = _strategy_union(registry, "segmentation")

    class CompartmentsSpec(_Model):
        """The bone compartments of the low-resolution scan: contoured by a strategy,
        written to ``compartments/``, and the region every volume is measured in."""

        contour: Contouring = Field(
            default_factory=lambda: {"name": "dual-threshold"},
            description="Contouring strategy and its parameters (the scan must be "
            "calibrated for density thresholds).",
        )
        measure_in: Literal["periosteal", "trabecular", "cortical"] | None = Field(
            "trabecular",
            description="Compartment the metrics are measured in (its mask on each "
            "volume's grid, by geometry); null: the whole volume.",
        )

    class KernelStage(_Model):
        """One kernel estimation (paper §2)."""

        name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="Stage name (file names).")
        similarity: Similarity = Field(default_factory=lambda: {"name": "l2"})
        regularizer: Regularizer = Field(default_factory=lambda: {"name": "gradient-l2"})
        solver: Solver | None = Field(
            None,
            description="Solver; null: exact (normal equations) for a quadratic similarity "
            "such as l2, gradient-descent otherwise.",
        )
        support: int = Field(
            9, ge=3, le=25, description="Odd kernel support per axis (paper: 5 to 13)."
        )
        alpha: float | None = Field(
            None, ge=0, description="Regularisation weight; null: scale-free default."
        )
        init_sigma: float | None = Field(
            None, gt=0, description="Sigma of the Gaussian start, HR voxels; null: the default."
        )
        init_from: str | None = Field(None, description="Start from an earlier stage's kernel.")
        regions: Regions | None = Field(
            None,
            description="One kernel per region of this grid (regions per axis z, y, x) over "
            "the low-resolution field of view: a spatially variant kernel, used as such by "
            "super-resolution stages; null: one kernel.",
        )
        bootstrap: int = Field(
            0,
            ge=0,
            le=10000,
            description="Bootstrap replicates for 95 % intervals of FWHM and MTF (0: none; "
            "l2 with the exact solver: about 20 ms each; other similarities: about "
            "four estimates each).",
        )

        @field_validator("support")
        @classmethod
        def _odd(cls, v: int) -> int:
            return _odd_support(v)

        @field_validator("bootstrap")
        @classmethod
        def _replicates(cls, v: int) -> int:
            if 0 < v < 10:
                raise ValueError(f"bootstrap needs at least 10 replicates (or 0: none), got {v}")
            return v

        @model_validator(mode="after")
        def _strategies_fit(self) -> KernelStage:
            weight = self.regularizer.params
            if "weight" in weight.model_fields_set:  # the regulariser's weight is alpha
                if self.alpha is not None and self.alpha != weight.weight:
                    raise ValueError(
                        f"alpha ({self.alpha}) and regularizer.params.weight ({weight.weight}) "
                        "are the same number: give one of them"
                    )
                self.alpha = weight.weight
            reg = registry.get("regularizer", self.regularizer.name)
            if not getattr(reg, "smooth", True):
                raise ValueError(
                    f"regularizer {self.regularizer.name!r} is not differentiable: kernel "
                    "estimation needs a smooth one (e.g. gradient-l2)"
                )
            sim = registry.get("similarity", self.similarity.name)
            if self.solver is not None and self.solver.name == "exact" and not sim.quadratic:
                raise ValueError(
                    f"solver 'exact' needs a quadratic similarity; {self.similarity.name!r} "
                    "is not (use gradient-descent, or leave solver out)"
                )
            return self

    class SuperResolutionStage(_Model):
        """One TV super-resolution (paper §3.1)."""

        name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="Stage name (file names).")
        kernel: str = Field(
            description="A kernel stage's name, or a kernel file (.npy or .zarr, with its "
            "sidecar recording the offset, or give offset)."
        )
        regularizer: Regularizer = Field(default_factory=lambda: {"name": "tv"})
        solver: Solver = Field(default_factory=lambda: {"name": "admm"})
        offset: float | None = Field(
            None, description="Offset c; null: the kernel's (estimated, or its sidecar's)."
        )

    class MetricsSpec(_Model):
        """Metrics of every output volume against the high-resolution reference."""

        structure: bool = Field(True, description="Also Tb.Th, Tb.Sp, Tb.N and DA.")
        threshold: float | None = Field(None, description="Fixed threshold; null: Otsu.")
        segmentations: list[Segmentation] = Field(
            default_factory=list,
            description="Also measure every super-resolved volume on the bone of these "
            "segmentations (rows '<volume> · <segmentation>'), e.g. partial-volume; the "
            "reference keeps Otsu's (or the threshold).",
        )
        per_iteration: bool = Field(True, description="Record metrics at every SR iteration.")
        structure_every: int = Field(
            10,
            ge=0,
            description="With structure and per_iteration, record Tb.Th and Tb.Sp every "
            "this many SR iterations (0: never).",
        )

    class PipelineSpec(_Model):
        """A boneframe pipeline: inputs, kernel estimations, super-resolutions, metrics."""

        model_config = ConfigDict(
            extra="forbid",
            allow_inf_nan=False,
            validate_default=True,
            title="boneframe pipeline spec",
        )
        version: Literal[1] = Field(description="Spec format version.")
        inputs: Inputs
        kernels: list[KernelStage] = Field(default_factory=list)
        superresolution: list[SuperResolutionStage] = Field(default_factory=list)
        compartments: CompartmentsSpec | None = Field(
            None, description="Contour the low-resolution scan into its compartments."
        )
        metrics: MetricsSpec = Field(default_factory=MetricsSpec)
        outputs: OutputSpec = Field(default_factory=OutputSpec)
        compute: ComputeSpec = Field(default_factory=ComputeSpec)

        @model_validator(mode="after")
        def _references(self) -> PipelineSpec:
            if self.compute.chunk_size % self.inputs.p:
                raise ValueError(
                    f"compute.chunk_size {self.compute.chunk_size} must be a multiple of "
                    f"inputs.p ({self.inputs.p}): a chunk of the micro-CT maps onto whole voxels "
                    "of the HR-pQCT"
                )
            seen: set[str] = set()
            for stage in self.kernels:
                if stage.name in seen:
                    raise ValueError(f"kernels: two stages are named {stage.name!r}")
                if stage.init_from is not None and stage.init_from not in seen:
                    raise ValueError(
                        f"kernels.{stage.name}.init_from: {stage.init_from!r} is not an earlier "
                        f"kernel stage (earlier: {', '.join(sorted(seen)) or 'none'})"
                    )
                seen.add(stage.name)
            names: set[str] = set()
            for sr in self.superresolution:
                if sr.name in names:
                    raise ValueError(f"superresolution: two stages are named {sr.name!r}")
                names.add(sr.name)
                if sr.kernel not in seen and not sr.kernel.endswith(KERNEL_FILES):
                    raise ValueError(
                        f"superresolution.{sr.name}.kernel: {sr.kernel!r} is neither a kernel "
                        f"stage ({', '.join(sorted(seen)) or 'none'}) nor a kernel file "
                        f"({' or '.join(KERNEL_FILES)})"
                    )
            return self

    return PipelineSpec


_REGISTRIES: dict[int, Registry] = {}


def stage_model(field: Literal["kernels", "superresolution", "metrics"]) -> Any:
    """The model of a spec section (a kernel stage, a super-resolution stage, the
    metrics) for the installed plugins: the command line validates its options
    through it, so one bound holds on both paths."""
    annotation = spec_model().model_fields[field].annotation
    args = typing.get_args(annotation)
    return args[0] if args else annotation


def spec_model(registry: Registry | None = None) -> type[BaseModel]:
    """The pipeline spec model for ``registry`` (default: the installed plugins)."""
    registry = registry or get_registry()
    _REGISTRIES[id(registry)] = registry
    return _spec_model_for(id(registry))


def format_problems(exc: ValidationError) -> list[str]:
    """One line per validation problem: ``field.path: message``."""
    out = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e.get("loc", ()))
        out.append(f"{loc or '(spec)'}: {e.get('msg')}")
    return out


def parse_spec_text(text: str, suffix: str, source: str = "spec") -> dict[str, Any]:
    """Parse YAML, TOML or JSON text into a mapping."""
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise InputError(f"{source}: unknown spec format {suffix!r}; use .yaml, .toml or .json")
    except InputError:
        raise
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{source}: cannot parse: {first}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{source}: a spec must be a mapping at the top level")
    return data


def _named_strategies(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(field path, kind, name)`` of every strategy a parsed spec names."""
    out = []
    fields = {
        "kernels": ("similarity", "regularizer", "solver"),
        "superresolution": ("regularizer", "solver"),
    }
    for section, keys in fields.items():
        stages = data.get(section)
        for i, stage in enumerate(stages if isinstance(stages, list) else []):
            if not isinstance(stage, dict):
                continue
            for key in keys:
                kind = key
                value = stage.get(key)
                name = value.get("name") if isinstance(value, dict) else value
                if isinstance(name, str):
                    out.append((f"{section}.{i}.{key}", kind, name))
    return out


def validate_spec(data: dict[str, Any], source: str = "spec", base: Path | None = None) -> Any:
    """Validate a parsed spec; input paths are resolved against ``base`` and checked.

    A strategy that two installed packages register under one name is refused
    with both packages named (it is not offered to the spec at all).
    """
    registry = get_registry()
    clashes = [
        f"{where}: {registry.conflict_message(kind, name)}"
        for where, kind, name in _named_strategies(data)
        if (kind, name) in registry.conflicts
    ]
    if clashes:
        raise SpecError(source, clashes)
    model = spec_model()
    try:
        spec: Any = model.model_validate(data)  # a model made at run time
    except ValidationError as exc:
        problems = format_problems(exc)
        text = " ".join(problems)
        problems += [  # a default name (no name given) is refused the same way
            registry.conflict_message(kind, name)
            for kind, name in registry.conflicts
            if f"'{name}'" in text
        ]
        raise SpecError(source, problems) from None
    problems = []
    for section, keys in (("files", ("hr", "lr")), ("registration", ("moving", "fixed"))):
        inputs = getattr(spec.inputs, section)
        if inputs is None:
            continue
        for key in keys:
            path = getattr(inputs, key)
            if base is not None and not path.is_absolute():
                path = base / path
                setattr(inputs, key, path)
            if not path.exists():
                problems.append(f"inputs.{section}.{key}: file not found: {path}")
    for i, sr in enumerate(spec.superresolution):
        if sr.kernel.endswith(KERNEL_FILES):
            path = Path(sr.kernel)
            if base is not None and not path.is_absolute():
                path = base / path
                sr.kernel = str(path)
            if not path.exists():
                problems.append(f"superresolution.{i}.kernel: file not found: {path}")
    if problems:
        raise SpecError(source, problems)
    return spec


def load_spec(path: str | Path) -> Any:
    """Read and validate a spec file (``.yaml``, ``.yml``, ``.toml`` or ``.json``)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such spec file")
    if not p.is_file():
        raise InputError(f"{p}: not a regular file (a spec is a .yaml, .toml or .json file)")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{p}: not UTF-8 text (byte {exc.start}): save the spec as UTF-8"
        ) from None
    data = parse_spec_text(text, p.suffix.lower(), str(p))
    return validate_spec(data, str(p), base=p.resolve().parent)


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of the pipeline spec (installed plugins included)."""
    schema = spec_model().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema

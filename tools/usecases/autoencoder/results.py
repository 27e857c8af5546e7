"""What one autoencoder bench run settles and measures: its config, its rows and its report (plain dataclasses)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

SCHEMA = "prune-and-export.bench-autoencoder/1"
BUDGETS = (0.5, 0.25, 0.1)
# label -> (search method, importance metric; None: the bench's metric, 'auto' by default)
METHODS = {
    "uniform-l1": ("uniform", "l1"),
    "uniform-l2": ("uniform", "l2"),
    "random": ("uniform", "random"),
    "global": ("global", None),
    "grid": ("grid", None),
    "gd": ("gd", None),
}
UNIFORM = ("uniform-l1", "uniform-l2", "random")
MODES = {False: "shrink", True: "re-fit"}  # reconstruct flag -> label
N_IMAGES = 8  # held-out digits drawn side by side
SMALLEST_KEEP = 0.02  # the bisection's lower end (fraction of prunable parameters kept)


@dataclass
class AEBenchConfig:
    """Every setting of one autoencoder bench run."""

    autoencoder: str = ""
    """autoencoder file ('': the shipped one, or one trained here when data is given)"""
    data: str | None = None
    """folder of MNIST IDX files (None: scikit-learn's 8x8 digits)"""
    keeps: tuple[float, ...] = BUDGETS
    """budgets: fractions of the prunable parameters kept"""
    methods: tuple[str, ...] = tuple(METHODS)
    """methods compared"""
    metric: str = "auto"
    """importance metric of global / grid / gd ('auto': the best at the uniform point on the objective)"""
    seed: int = 0
    """seed of the data split, random importance, SPSA, training on --data"""
    tolerance: float = 0.01
    """budget band below keep (fraction of prunable parameters)"""
    max_evaluations: int = 60
    """objective evaluations gradient descent may spend"""
    min_psnr: float | None = None
    """the reconstruction bound in dB on validation images (None: unpruned validation PSNR - psnr_drop)"""
    psnr_drop: float = 1.0
    """dB below the unpruned validation PSNR that the bound allows when min_psnr is not given"""
    bisection_steps: int = 7
    """halvings of the budget interval per method and mode (precision about 1/2^steps)"""
    prune_code: bool = False
    """also prune the bottleneck code"""
    image_keep: float = 0.25
    """budget whose reconstructions are drawn"""
    latency_calls: int = 2000
    """timed batch-1 calls per model and runtime and round (0: no timing)"""
    latency_rounds: int = 3
    """interleaved timing rounds"""
    train_epochs: int = 30
    """epochs when an autoencoder is trained here on --data"""


@dataclass
class BudgetRow:
    """One method at one budget, in one mode (shrink only, or re-fit)."""

    method: str
    metric: str
    mode: str
    keep: float
    keep_fraction: float
    feasible: bool
    params: int
    params_kept: float  # params / unpruned params
    macs: int
    widths: dict[str, list[int]]
    coefficients: dict[str, float]
    val_psnr: float
    test_psnr: float
    test_drop_db: float  # test PSNR - unpruned test PSNR
    evaluations: int
    seconds: float
    metric_trials: dict[str, float] = field(default_factory=dict)


@dataclass
class BoundRow:
    """The largest parameter reduction keeping validation PSNR >= the bound, for one method in one mode."""

    method: str
    mode: str
    min_psnr: float
    found: bool  # False: even the largest model tried below 1.0 broke the bound
    keep: float  # budget of the model found (1.0: nothing could be removed)
    keep_fraction: float
    params: int
    reduction: float  # 1 - params / unpruned params
    val_psnr: float
    test_psnr: float
    test_holds: (
        bool  # test PSNR >= unpruned test PSNR - (unpruned val PSNR - bound): the bound carries over to unseen images
    )
    tried: list[list[float | None]]  # [keep, val PSNR] per bisection step (None: no candidate inside the budget band)
    seconds: float


@dataclass
class LatencyRow:
    """Batch-1 latency of one model in one runtime on this machine."""

    model: str
    runtime: str
    median_us: float
    p99_us: float
    ratio_to_unpruned: float
    n: int


@dataclass
class AEReport:
    """Everything one autoencoder bench run measured."""

    schema: str
    command: str
    created_utc: str
    seconds: float
    machine: dict
    config: dict
    data: dict
    unpruned: dict
    rows: list[BudgetRow] = field(default_factory=list)
    bounds: list[BoundRow] = field(default_factory=list)
    latency: list[LatencyRow] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    image_keep: float = 0.0  # budget whose reconstructions are drawn (the one of keeps closest to config image_keep)

    def to_dict(self) -> dict:
        return asdict(self)

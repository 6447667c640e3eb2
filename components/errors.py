"""The error a component raises when its args are invalid, before any child exists."""


class ArgsError(ValueError):
    def __init__(self, component: str, problems: list[str]):
        self.component = component
        self.problems = problems
        super().__init__(f"invalid {component} args:\n" + "\n".join(f"  - {p}" for p in problems))


def out_of_range(name: str, value: float, low: float, high: float, *, who: str = "allowed") -> list[str]:
    """[] when low <= value <= high, else the one problem line naming the arg, the value and the range."""
    return [] if low <= value <= high else [f"{name}: got {value}; {who} {low}-{high}"]

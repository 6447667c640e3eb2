"""The error a component raises when its args are invalid, before any child exists."""


class ArgsError(ValueError):
    def __init__(self, component: str, problems: list[str]):
        self.component = component
        self.problems = problems
        super().__init__(f"invalid {component} args:\n" + "\n".join(f"  - {p}" for p in problems))

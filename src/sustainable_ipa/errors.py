"""The one error type that reaches the user as a single line."""


class UserError(Exception):
    """Bad input: the message names the problem and the fix, and the entry point prints only that line."""

    def __init__(self, problem: str, fix: str):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}. Fix: {fix}")

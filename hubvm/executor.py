"""invoke's Executor, made to check a whole run before its first task (set as tasks.executor_class in invoke.yaml).

invoke calls a pre-task without the flags of the task that asked for it, and runs it first: `invoke up -i BAD`
would build the box (pack, up's pre-task) before up ever read its -i, and `invoke up` on a machine without
Vagrant would find that out only after pack. So, before anything runs, this Executor:

- loads the settings of every task named on the command line with that task's own -i/--ip and -d/--data, so a
  bad value stops the run with its one line and nothing built;
- for a run that boots the VM (up, also as export's pre-task), probes every tool the run needs, as `invoke all`
  does (under --dry: a warning line instead).
"""

from __future__ import annotations

from typing import Any

import invoke

from hubvm import invoke_config, steps, tools
from hubvm.errors import user_errors

# A run with this task (given, or as export's pre-task) needs every tool of a build
BOOTS_THE_VM = "up"


class Executor(invoke.Executor):
    def execute(self, *tasks: Any) -> dict[Any, Any]:
        self._check(self.normalize(tasks))
        return super().execute(*tasks)

    @user_errors
    def _check(self, direct: list[invoke.Call]) -> None:
        config = self.config.clone()
        config.load_shell_env()  # invoke loads INVOKE_* per call; the checks need them now
        s = None
        for call in direct:
            s = invoke_config.load(config, invoke_config.flag_overrides(call.kwargs))
        if s is not None and BOOTS_THE_VM in {call.task.name for call in self.expand_calls(list(direct))}:
            steps.require_tools(steps.Shell(invoke.Context(config=config)), s, tools.needed(s))

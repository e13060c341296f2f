"""fusecli's built-in task plugins (installed as ``fusecli_tasks``), one package per task.

Each is loaded through the ``fusecli`` entry-point group, exactly like a third-party plugin.
"""

"""What the notebooks use: the event stepper, the plots and the notebook helpers.

Modules: :mod:`~ettlib.notebooks.widgets` (:class:`~ettlib.notebooks.widgets.EventStepper`),
:mod:`~ettlib.notebooks.plots` (on :mod:`~ettlib.notebooks.figures`),
:mod:`~ettlib.notebooks.tools` and :mod:`~ettlib.notebooks.clean` (notebooks
committed without outputs).  Nothing is imported here: ipywidgets and
matplotlib load only when a module is used.
"""

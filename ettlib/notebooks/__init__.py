"""What the notebooks use: the event stepper, the plots and the notebook helpers.

Modules: :mod:`~ettlib.notebooks.widgets` (:class:`~ettlib.notebooks.widgets.EventStepper`),
:mod:`~ettlib.notebooks.plots` and :mod:`~ettlib.notebooks.tools`.  Nothing is
imported here: ipywidgets and matplotlib load only when a module is used.
"""

"""The pipeline's figures, one module per figure so that editing one figure's code redraws only it
(each figure rule's script imports its own module; this file imports nothing):

* :mod:`.objective`: objective of Eq. 2 vs iteration (paper Fig. 1);
* :mod:`.zonotope`: zonotopes before/after the tropical solve (paper Fig. 2);
* :mod:`.scores`: score vs retained share per task, Standard and Tropical;
* :mod:`.methods`: one task, every method with bands over seeds (comparison study);
* :mod:`.delta`: one task, Tropical − Standard with its bootstrap CI per λ (comparison study);
* :mod:`.sizes`: score vs file size on disk per task, compact and structured outputs side by side;
* :mod:`.common`: matplotlib set-up, atomic PNG/SVG writing, shared colours.

Every figure is written as PNG and SVG, atomically.
"""

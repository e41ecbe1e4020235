"""The generator stages as library functions, one module per stage.

``pipelines/{encoder,base_model,generate,filter}.py`` only parse paths, load params and call
these with the config sections they use. Each returns the summary it wrote, so tests and
benchmarks call them directly. Import the stage's own module (``...stages.filter``): this package
imports none of them, so a stage depends only on the code it runs.
"""

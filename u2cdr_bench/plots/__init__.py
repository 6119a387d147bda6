"""Figures from run records and saved embeddings (``u2cdr-bench plot ...``; matplotlib, PNG or PDF).

* :mod:`.retrievals` -- queries and their top-k gallery items (the paper's Fig. 4);
* :mod:`.embedding` -- 2-D maps of query and gallery embeddings (t-SNE / UMAP / PCA; Figs. 2-3);
* :mod:`.results` -- per-setting averages with the spread over seeds, UEM and the paper's numbers marked;
* :mod:`.common` -- output files, sizes, titles, colours and the images behind sample ids.
"""

"""Inter-annotator agreement: Krippendorff's alpha as pure maths (``maths``, numpy only) and
its queries over the database (``selectors``)."""

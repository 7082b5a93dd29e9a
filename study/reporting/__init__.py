"""The report, drawn from what study.stats computed: its sections as data (`sections`), its text
(`templates/`, Jinja2, said through `document.render`), figures (`plots`), documents
(`document`: Markdown and self-contained HTML), the whole report (`report`), the comparison of
studies (`compare`) and the optuna-dashboard page (`dashboard`)."""

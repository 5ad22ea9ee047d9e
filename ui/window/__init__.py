"""The main window's parts, by job (mixed into ``ui.main_window.MainWindow``)."""

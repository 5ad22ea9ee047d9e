"""The main window's panels: chat, composer, sidebar, camera, microphone."""

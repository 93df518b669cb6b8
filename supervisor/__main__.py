from supervisor.report.cli import main

main()

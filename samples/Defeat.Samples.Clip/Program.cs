using Defeat.Samples.Clip;

// DEFEAT on a real CLIP with your own images; see README.md beside this file.
//   dotnet run -c Release --project samples/Defeat.Samples.Clip -- --clip ViT-B-32-state-dict.pt --images data/pets
//   dotnet run -c Release --project samples/Defeat.Samples.Clip -p:TorchBackend=cuda-linux -- --clip ViT-B-32-state-dict.pt \
//       --split split_zhou_OxfordPets.json --image-root data/oxford_pets/images --device cuda --half
return await ClipSampleCommand.Create().Parse(args).InvokeAsync();
